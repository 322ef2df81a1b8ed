"""``insightroi deliver``: send the detector's alerts to their owners' channels."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from insightroi._cli_common import (
    DEFAULT_PROGRAM,
    GATE_EXIT,
    JsonOption,
    ProgramOption,
    StoreOption,
    console,
    err_console,
    fail,
    run_or_fail,
    store_url,
)

__all__ = ["register"]


def deliver_command(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    since: Annotated[Optional[datetime], typer.Option(
        "--since", help="Enqueue alerts dated from this day (UTC); default: the last 14 days, so a first run "
                        "does not send months of history.",
    )] = None,
    public_url: Annotated[Optional[str], typer.Option(
        "--public-url", envvar="INSIGHTROI_PUBLIC_URL",
        help="The server as owners reach it; messages then carry signed acknowledge / taking-action / not-useful "
             "links (signed with $INSIGHTROI_LINK_SECRET, which `serve` must share).",
    )] = None,
    wait: Annotated[float, typer.Option(
        "--wait", help="Keep retrying pending deliveries for up to this many seconds (0: one pass).", min=0,
    )] = 0.0,
    max_attempts: Annotated[int, typer.Option("--max-attempts", help="Attempts before a delivery is dead-lettered.",
                                              min=1)] = 6,
    backoff: Annotated[float, typer.Option("--backoff", help="Seconds before the first retry; doubles each time.",
                                           min=0)] = 30.0,
    requeue_dead: Annotated[Optional[str], typer.Option(
        "--requeue-dead", help="First put dead deliveries back in the queue, attempts from zero: 'all' or one "
                               "channel's name (after fixing it; the dead letters stay as the record).",
    )] = None,
    fail_on_dead: Annotated[bool, typer.Option(
        "--fail-on-dead", help="Exit with code 3 when this run dead-lettered a delivery (for a scheduled job).",
    )] = False,
    as_json: JsonOption = False,
) -> None:
    """Deliver new alerts to the channels of the program file (Slack, Teams, e-mail, signed webhooks).

    Once per alert and channel; failures retry with exponential backoff, permanent ones go to the dead letters.
    """
    from insightroi.delivery import DeliveryPolicy, LinkSigner, deliver, link_key, outbox_counts
    from insightroi.delivery import requeue_dead as requeue
    from insightroi.program import load_program
    from insightroi.store import open_store

    prog = run_or_fail(load_program, program)
    if not prog.channels:
        fail(f"{program}: no [[channels]]: name where each owner's alerts go (see insightroi.program.Channel)")
    signer = None
    if public_url:
        secret = os.environ.get("INSIGHTROI_LINK_SECRET")
        if not secret:
            fail("--public-url needs INSIGHTROI_LINK_SECRET (the key `serve` verifies the links with)")
        if len(secret) < 32:
            fail(f"INSIGHTROI_LINK_SECRET is {len(secret)} characters long; use at least 32")
        signer = LinkSigner(public_url, link_key(secret))
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    start = since.replace(tzinfo=None) if since else now - timedelta(days=14)
    policy = DeliveryPolicy(max_attempts=max_attempts, backoff_s=backoff)
    # hold=False: the file is taken per state change, so `serve` keeps answering while messages go out.
    st = run_or_fail(open_store, store_url(store), hold=False)
    try:
        if requeue_dead:
            if requeue_dead != "all" and requeue_dead not in {c.name for c in prog.channels}:
                fail(f"--requeue-dead: no channel {requeue_dead!r}; channels: "
                     f"{', '.join(c.name for c in prog.channels)} (or 'all')")
            with st.attached():
                n = run_or_fail(requeue, st, now, None if requeue_dead == "all" else requeue_dead)
            if not as_json:
                console.print(f"requeued {n} dead deliver{'y' if n == 1 else 'ies'}")
        run = run_or_fail(deliver, st, prog, since=start, signer=signer, policy=policy, wait_s=wait)
        with st.attached():
            totals = outbox_counts(st)
    finally:
        st.close()
    if as_json:
        console.print_json(json.dumps({**run.to_dict(), "totals": totals}, default=str))
    else:
        t = Table(title="delivery", show_header=True)
        # "sent" counts alert x channel deliveries; "messages" what went out (a digest carries several).
        for col in ("enqueued", "sent", "messages", "retried", "dead", "pending", "seconds"):
            t.add_column(col, justify="right")
        t.add_row(*(str(x) for x in (run.enqueued, run.sent, run.messages, run.retried, run.dead, run.pending)),
                  f"{run.seconds:.1f}")
        console.print(t)
        console.print(f"outbox totals: {totals['delivered']} delivered, {totals['pending']} pending, "
                      f"{totals['sending']} in flight, {totals['dead_letters']} dead letters")
        for owner, n in sorted(run.unrouted.items()):
            console.print(f"[yellow]no channel[/] for owner {escape(owner)}: {n} alert(s) wait for one")
        for line in run.errors[-10:]:
            err_console.print(f"  [red]failed[/] {escape(line)}", highlight=False, soft_wrap=True)
        if signer is None:
            console.print("[dim]no --public-url: messages carry no acknowledge links[/]")
    if fail_on_dead and run.dead:
        err_console.print(f"[bold red]gate failed[/] (--fail-on-dead): {run.dead} delivery(ies) dead-lettered",
                          highlight=False)
        raise typer.Exit(GATE_EXIT)


def register(app: typer.Typer) -> None:
    app.command("deliver")(deliver_command)
