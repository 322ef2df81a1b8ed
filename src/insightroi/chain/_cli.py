"""``insightroi trace ID`` (chain of custody) and ``insightroi chain`` (workflow KPIs)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.tree import Tree

from insightroi._cli_common import DEFAULT_PROGRAM, JsonOption, ProgramOption, StoreOption, console, run_or_fail, store_url

__all__ = ["register"]


def _t(x: Any) -> str:
    return "-" if x is None else str(x)[:16].replace("T", " ")


def _num(x: Any, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def _noun(alert: dict[str, Any]) -> str:
    from insightroi.program import PRAISE_OWNER

    # A praise alert's counts are compliments, not complaints.
    return "mentions" if alert.get("team") == PRAISE_OWNER else "complaints"


def _comparison_text(o: dict[str, Any]) -> str:
    """The comparison a before/after figure carries, in words."""
    if o.get("comparison") == "treated vs control":
        net = o.get("net_change")
        cc = o.get("control_change")
        return (f"; treated vs control: {o['control_families']} control families over the same windows "
                f"{o['control_before']} -> {o['control_after']}" + (f" ({cc:+.0%})" if cc is not None else "")
                + (f", net {net:+.0%}" if net is not None else ""))
    return " [yellow](uncontrolled before/after: validate-claim rejects this comparison)[/]"


def render_trace(tr) -> Tree:
    """Rich tree: feedback -> model outputs -> alerts -> what people did -> what moved after."""
    root = Tree(f"[bold]{tr.kind} {tr.id}[/]")
    if tr.feedback:
        node = root.add("[bold]customer feedback[/]")
        for f in tr.feedback:
            leaf = node.add(
                f"{_t(f.get('event_time'))}  {f.get('source')}  {f.get('sku') or ''} / {f.get('sku_family') or ''}"
                + (f"  rating {f['rating']:g}" if f.get("rating") is not None else "")
            )
            leaf.add(f"[italic]\"{f.get('text')}\"[/]")
            for r in f.get("reviews", []):
                leaf.add(f"reviewed by {r.get('reviewer')}: {r.get('task')} = {r.get('label')} "
                         f"(model said {r.get('model_label')})")
    if tr.insights:
        node = root.add("[bold]model outputs[/]")
        for i in tr.insights:
            node.add(
                f"{i.get('task')} = [bold]{i.get('label')}[/]  confidence {_num(i.get('confidence'), '{:.2f}')}  "
                f"method {i.get('method')}  model {i.get('model_version')}  evidence: {i.get('evidence') or '-'}"
            )
    for e in tr.insight_events:
        root.add(f"insight event {e.get('iid')} at {_t(e.get('event_time'))}: {e.get('topic')} on {e.get('sku_family')}")
    if not tr.alerts:
        root.add("[yellow]no alert was raised from this[/]")
    for a in tr.alerts:
        link = " [yellow](inferred link)[/]" if a.get("link") == "inferred" else ""
        node = root.add(
            f"[bold]alert {a['alert_id']}[/]{link}  {_t(a.get('delivered_at'))}  to [bold]{a.get('team')}[/]"
            + (f" ({a['recipient']})" if a.get("recipient") else "")
            + f"  topic {a.get('topic')}  family {a.get('sku_family')}"
        )
        if not a["events"]:
            node.add("[red]no response recorded (backlog)[/]")
        for e in a["events"]:
            payload = e.get("payload")
            if isinstance(payload, dict):
                payload = ", ".join(f"{k}: {v}" for k, v in payload.items())
            tag = f" [yellow]({e['link']} link)[/]" if e.get("link") not in (None, "id") else ""
            node.add(f"{_t(e.get('event_time'))}  {e.get('event_type')}  by {e.get('actor') or e.get('team') or '?'}"
                     + (f"  - {payload}" if payload else "") + tag)
        o = a.get("outcome") or {}
        if o.get("anchor"):
            change = o.get("change")
            on = node.add(
                f"what moved after: {o['topic']} {_noun(a)} in {o['sku_family']}, {o['window_days']} days "
                f"before vs after the {'fix' if o['anchor'] == 'fix_deployed' else 'alert'}: "
                f"{o['complaints_before']} -> {o['complaints_after']}"
                + (f" ({change:+.0%})" if change is not None else "")
                + _comparison_text(o)
            )
            on.add("weekly: " + "  ".join(f"{w['week']:+d}w:{w['complaints']}" for w in o["weekly"]))
    for n in tr.notes:
        root.add(f"[dim]note: {n}[/]")
    return root


def trace_cmd(
    id: Annotated[str, typer.Argument(help="An insight, alert, feedback or chain-event id.")],
    store: StoreOption = None,
    json_out: JsonOption = False,
    window: Annotated[int, typer.Option("--window", help="Days before/after the fix to compare.")] = 28,
) -> None:
    """Chain of custody of one insight, alert or feedback item: from the words to what moved."""
    from insightroi.chain import trace
    from insightroi.store import open_store

    with run_or_fail(open_store, store_url(store)) as st:
        tr = run_or_fail(trace, st, id, outcome_window_days=window)
    if json_out:
        typer.echo(json.dumps(tr.to_dict(), indent=2, default=str))
        return
    console.print(render_trace(tr))
    t = Table(title="Timeline")
    for c in ("time", "stage", "what"):
        t.add_column(c)
    for s in tr.timeline():
        t.add_row(_t(s["time"]), s["stage"] or "", s["what"])
    console.print(t)


def chain_cmd(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    json_out: JsonOption = False,
    start: Annotated[str | None, typer.Option("--start", help="Only alerts delivered from this date.")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Only alerts delivered before this date.")] = None,
) -> None:
    """Workflow KPIs of the decision chain per team: adoption, time to ack / fix, overrides, backlog."""
    from insightroi.chain import chain_summary
    from insightroi.program import load_program
    from insightroi.services import run_chain
    from insightroi.store import open_store

    with run_or_fail(open_store, store_url(store)) as st:
        if start is None and end is None and program.exists():
            # The whole chain is the stage's section (what the report shows); a date slice, or a
            # store without a program file, gets a view that is not saved.
            s = run_or_fail(run_chain, st, run_or_fail(load_program, program)).model_dump(
                mode="json", exclude={"provenance"})
        else:
            s = run_or_fail(chain_summary, st, start=start, end=end)
    if json_out:
        typer.echo(json.dumps(s, indent=2, default=str))
        return
    f = s["funnel"]
    console.print(
        f"[bold]Decision chain[/]: {f['insights']} insights -> {f['alerts']} alerts -> {f['acknowledged']} acknowledged "
        f"-> {f['acted']} acted upon -> {f['fixed']} fixes deployed; {s['inferred_links']} links inferred "
        "(by SKU / family + topic + time, no ids)"
    )
    fx = s.get("fixes_without_alert") or {}
    if fx.get("fixes"):
        console.print(
            f"Fixes with no alert (manual process): {fx['fixes']}, {fx['linked_to_insight']} traced to an earlier "
            f"insight; median days insight -> fix {_num(fx.get('median_days_insight_to_fix'))} "
            f"vs alert -> fix {_num(fx.get('median_days_alert_to_fix'))} with alerts"
        )
    t = Table(title="Per team (leading | lagging)")
    cols = ("team", "alerts", "adoption", "median h to ack", "median d to fix", "override", "backlog",
            "reviewer disagreement", "complaints before -> after fixes")
    for c in cols:
        t.add_column(c)
    for r in s["by_team"]:
        t.add_row(
            str(r["team"]), str(r["alerts"]), _num(r["adoption_rate"], "{:.0%}"), _num(r["median_hours_to_ack"]),
            _num(r["median_days_to_fix"]), _num(r["override_rate"], "{:.0%}"), str(r["backlog"]),
            _num(r.get("reviewer_disagreement"), "{:.0%}"),
            f"{r['complaints_before']:.0f} -> {r['complaints_after']:.0f}"
            + (f" ({r['complaint_change']:+.0%})" if r.get("complaint_change") is not None else "")
            + (f"; control {r['control_before']:.0f} -> {r['control_after']:.0f}, net {r['net_complaint_change']:+.0%}"
               if r.get("net_complaint_change") is not None else ""),
        )
    console.print(t)
    if s.get("complaints_comparison") == "treated vs control":
        console.print("Complaints before -> after fixes: treated vs control (the same windows in the control "
                      "SKU families).")
    else:
        console.print("[yellow]Complaints before -> after fixes: uncontrolled before/after; validate-claim "
                      "rejects this comparison as evidence of an effect.[/]")


def register(app: typer.Typer) -> None:
    """Add ``insightroi trace`` and ``insightroi chain`` to the CLI."""
    app.command("trace")(trace_cmd)
    app.command("chain")(chain_cmd)
