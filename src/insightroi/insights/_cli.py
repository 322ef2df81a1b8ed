"""CLI: ``insightroi classify``, ``detect``, ``themes``, ``validate-model``, ``review``."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from insightroi._cli_common import DEFAULT_PROGRAM, JsonOption, ProgramOption, StoreOption, console, run_or_fail, store_url


def _dump(obj) -> None:
    console.print_json(json.dumps(obj, default=str))


def classify(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    method: Annotated[str, typer.Option(help="lexicon (VADER + keyword rules) | embedding | seeded (taxonomy-seeded "
                                             "topics, trained on the review queue's labels once there are 50; "
                                             "cross-domain sentiment) | auto")] = "lexicon",
    batch_size: Annotated[int, typer.Option(help="Feedback rows per transaction.")] = 5000,
    jobs: Annotated[int, typer.Option(help="Worker processes; -1 = one per core (lexicon models).")] = -1,
    as_json: JsonOption = False,
) -> None:
    """Classify feedback not yet classified by this model version (sentiment, topic, severity)."""
    from insightroi.program import load_program
    from insightroi.services import run_classify
    from insightroi.store import open_store

    prog = run_or_fail(load_program, program)
    with run_or_fail(open_store, store_url(store)) as st:
        if as_json:
            sec = run_or_fail(run_classify, st, prog, method=method, batch_size=batch_size, jobs=jobs)
            _dump(sec.model_dump(mode="json"))
            return
        with Progress(TextColumn("classifying"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeRemainingColumn(), console=console, transient=True) as bar:
            task = bar.add_task("classify", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            sec = run_or_fail(run_classify, st, prog, method=method, batch_size=batch_size, jobs=jobs,
                              progress=progress)
    x = sec.model_dump()
    console.print(
        f"classified {sec.n_classified} of {sec.n_feedback} feedback rows ({sec.method}); wrote "
        f"{x.get('n_rows_written', 0)} insight rows in {x.get('classify_seconds', 0):.1f}s; "
        f"{x.get('n_unclassifiable', 0)} unclassifiable"
    )
    for task_name, v in sec.model_versions.items():
        console.print(f"  {task_name}: {v}")


def detect(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    start: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="First day alerts may fire.")] = None,
    end: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last day alerts may fire.")] = None,
    alpha: Annotated[float, typer.Option(help="Tail-probability threshold per series-day.")] = 1e-3,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print alerts without writing chain events.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Detect topic spikes per SKU family and day; route them to owners (never to control units)."""
    from insightroi.insights._themes_evidence import to_rich
    from insightroi.program import load_program
    from insightroi.services import run_detect
    from insightroi.store import open_store

    prog = run_or_fail(load_program, program)
    with run_or_fail(open_store, store_url(store)) as st:
        sec = run_or_fail(run_detect, st, prog, start=start.date() if start else None,
                          end=end.date() if end else None, alpha=alpha, dry_run=dry_run)
        if as_json:
            _dump(sec.model_dump(mode="json"))
            return
        evidence = _alert_snippets(st, prog, sec.alerts[:10])
        ins = st.table("insights")
        unclassified = not sec.n_detected and not int(ins.filter(ins.task == "topic").count().execute())
    if unclassified:
        # Zero alerts from a store with no topic insights says nothing about spikes.
        console.print("[yellow]no topic insights in the store yet: run `insightroi classify` first[/]")
    title = f"{len(sec.alerts)} alerts ({sec.n_written} new chain events)"
    if sec.withheld_control:
        title += f"; {sec.withheld_control} about control units withheld"
    table = Table(title=title)
    for col in ("alert", "day", "topic", "sku_family", "days", "observed", "expected", "p", "owner", "evidence"):
        table.add_column(col)
    for a in sec.alerts[:100]:
        table.add_row(a["alert_id"], a["day"], a["topic"], a["sku_family"], str(a["window_days"]), str(a["observed"]),
                      f"{a['expected']:.2f}", f"{a['p_value']:.1e}", a["owner"],
                      f"{len(a.get('feedback_ids', []))} rows")
    console.print(table)
    for aid, snips in evidence.items():
        console.print(Text(f"{aid}:", style="bold"))
        for sn in snips:
            line = to_rich(sn)
            line.pad_left(4)
            console.print(line, highlight=False, soft_wrap=True)


def _alert_snippets(st, prog, alerts: list[dict], n: int = 3) -> dict:
    """Up to ``n`` snippets of each alert's triggering feedback, its topic's keywords marked."""
    from insightroi.insights._themes_evidence import snippets

    ids = sorted({str(f) for a in alerts for f in (a.get("feedback_ids") or [])[: n * 4]})
    if not ids:
        return {}
    fb = st.table("feedback")
    texts = dict(fb.filter(fb.id.isin(ids)).select("id", "text").execute().itertuples(index=False))
    kw = {t.topic: t.keywords for t in prog.taxonomy}
    out = {}
    for a in alerts:
        got = snippets([texts[str(f)] for f in (a.get("feedback_ids") or [])[: n * 4] if texts.get(str(f))],
                       kw.get(a["topic"], ()), n=n)
        if got:
            out[a["alert_id"]] = got
    return out


def _themes_method(method: str) -> str:
    if method != "auto":
        return method
    from insightroi.insights._embed import embeddings_available

    return "embedding" if embeddings_available() else "tfidf"


def _print_theme(i: int, t: dict) -> None:
    from rich.markup import escape

    from insightroi.insights._themes_evidence import Snippet, to_rich

    name = t.get("label") or "_".join(t["terms"][:3])
    extra = f", growth x{t['growth']:.1f}" if t.get("growth") is not None else ""
    console.print(f"[bold][{i}] {escape(name)}[/]  ({t['size']} items, cohesion {t.get('cohesion', 0):.2f}{extra}; "
                  f"label from {escape(t.get('label_source') or 'terms')})", highlight=False)
    console.print(f"    terms: {escape(', '.join(t['terms']))}", highlight=False)
    if t.get("summary"):
        console.print(f"    summary: {escape(t['summary'])}", highlight=False)
    call = t.get("llm_call")
    if call:
        tok = ("? tokens" if call.get("prompt_tokens") is None
               else f"{call['prompt_tokens']}+{call.get('completion_tokens') or 0} tokens")
        console.print(f"    llm: {call['latency_s']:.2f} s, {tok}, cost {call['cost']:.4f}", highlight=False)
    for e in t.get("evidence") or []:
        sn = Snippet(segments=[(a, bool(b)) for a, b in e["segments"]], matched=e.get("matched", []))
        line = to_rich(sn)
        line.pad_left(6)
        console.print(line, highlight=False, soft_wrap=True)


def themes(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    days: Annotated[int, typer.Option(help="Look-back window in days (compared with the window before it).")] = 56,
    method: Annotated[str, typer.Option(help="auto (embedding when the MiniLM extra is installed, else tfidf) | "
                                             "embedding | tfidf")] = "auto",
    top: Annotated[int, typer.Option(help="Themes printed (all are saved for --promote).")] = 15,
    llm: Annotated[str | None, typer.Option("--llm", envvar="INSIGHTROI_LLM_BASE_URL",
                                            help="OpenAI-compatible endpoint (e.g. http://localhost:8000/v1) that names "
                                                 "and summarises each theme; key from INSIGHTROI_LLM_API_KEY. Never "
                                                 "required: without it, or when it fails, themes keep their "
                                                 "c-TF-IDF names.", show_envvar=True)] = None,
    llm_model: Annotated[str | None, typer.Option(envvar="INSIGHTROI_LLM_MODEL", help="Model name sent to --llm.")] = None,
    llm_price_per_1k: Annotated[float | None, typer.Option(
        envvar="INSIGHTROI_LLM_PRICE_PER_1K", min=0,
        help="Price of 1,000 tokens, for the cost recorded per call (0 when not given).")] = None,
    llm_timeout: Annotated[float, typer.Option(help="Seconds per LLM request.")] = 30.0,
    promote: Annotated[int | None, typer.Option(help="Add theme N of the last `insightroi themes` run to the "
                                                     "program's taxonomy (needs --name).")] = None,
    name: Annotated[str | None, typer.Option(help="Topic name for --promote (snake_case).")] = None,
    owner: Annotated[str, typer.Option(help="Owner team of the promoted topic.")] = "unassigned",
    severity: Annotated[str, typer.Option(help="Severity of the promoted topic: low | medium | high | critical.")] = "medium",
    as_json: JsonOption = False,
) -> None:
    """Propose new topics from recent 'other' and low-confidence feedback, with evidence; promote one into the taxonomy."""
    import numpy as np

    from insightroi.insights import discover_themes
    from insightroi.insights._llm import LlmSummarizer, label_themes
    from insightroi.program import load_program
    from insightroi.store import open_store

    if promote is not None:
        _promote(store, program, promote, name, owner, severity, as_json)
        return
    prog = run_or_fail(load_program, program)
    how = _themes_method(method)
    with run_or_fail(open_store, store_url(store)) as st:
        found = run_or_fail(discover_themes, st, prog, days=days, method=how, rng=np.random.default_rng(0))
        summarizer = run_or_fail(LlmSummarizer, base_url=llm, model=llm_model, timeout=llm_timeout,
                                 price_per_1k=llm_price_per_1k)
        if summarizer.enabled:
            found = label_themes(found, summarizer)
        rows = [t.to_dict(with_ids=True) for t in found]
        calls = [c.to_dict() for c in summarizer.calls]
        llm_totals = {"calls": len(calls), "latency_s": round(sum(c["latency_s"] for c in calls), 4),
                      "prompt_tokens": sum(c["prompt_tokens"] or 0 for c in calls),
                      "completion_tokens": sum(c["completion_tokens"] or 0 for c in calls),
                      "cost": sum(c["cost"] for c in calls)}
        # what --promote N refers to: the list the user just read, not a re-run on newer data
        st.save_result("themes", "latest", {"method": how, "days": days, "themes": rows, "llm": llm_totals})
    if as_json:
        _dump({"method": how, "themes": [{k: v for k, v in d.items() if k != "feedback_ids"} for d in rows],
               "llm": llm_totals})
        return
    if not rows:
        console.print("no new themes: too few 'other' or low-confidence items in the window")
        return
    console.print(f"{len(rows)} proposed themes ({how}); the {min(top, len(rows))} first:")
    for i, d in enumerate(rows[:top], start=1):
        _print_theme(i, d)
    if calls:
        console.print(f"LLM: {llm_totals['calls']} calls, {llm_totals['latency_s']:.1f} s, "
                      f"{llm_totals['prompt_tokens']}+{llm_totals['completion_tokens']} tokens, "
                      f"cost {llm_totals['cost']:.4f}")
    console.print("Add one to the taxonomy: insightroi themes --promote N --name TOPIC_NAME --owner TEAM")


def _promote(store, program, n: int, name: str | None, owner: str, severity: str, as_json: bool) -> None:
    from insightroi._cli_common import fail

    from insightroi.insights._themes_promote import promote_theme
    from insightroi.store import open_store

    if not name:
        fail("--promote needs --name TOPIC_NAME (snake_case)")
    if severity not in ("low", "medium", "high", "critical"):
        fail(f"--severity {severity!r}: use low, medium, high or critical")
    with run_or_fail(open_store, store_url(store)) as st:
        saved = st.load_result("themes:latest")
    found = (saved or {}).get("themes") or []
    if not found:
        fail("no proposed themes saved in this store: run `insightroi themes` first")
    if not 1 <= n <= len(found):
        fail(f"--promote {n}: the last `insightroi themes` run proposed themes 1 to {len(found)}")
    block = run_or_fail(promote_theme, program, found[n - 1], name=name, owner=owner, severity=severity)
    if as_json:
        _dump({"promoted": n, "topic": name, "program": str(program), "block": block})
        return
    console.print(f"added topic {name!r} (theme {n}) to {program}; run `insightroi classify` to use it:", highlight=False)
    console.print(block, markup=False, highlight=False)


def validate_model_cmd(
    labels: Annotated[Path, typer.Argument(help="CSV with columns text, label (optional time).")],
    program: ProgramOption = DEFAULT_PROGRAM,
    task: Annotated[str, typer.Option(help="auto | topic | sentiment")] = "auto",
    method: Annotated[str, typer.Option(help="lexicon | embedding | seeded | auto")] = "lexicon",
    as_json: JsonOption = False,
) -> None:
    """Precision / recall / F1 per label, confusion matrix and calibration on a labelled CSV."""
    from insightroi.insights import validate_csv
    from insightroi.program import load_program

    prog = run_or_fail(load_program, program)

    rep = run_or_fail(validate_csv, labels, prog, task=task, method=method)
    if as_json:
        _dump(rep.to_dict())
        return
    console.print(f"n = {rep.n}, accuracy {rep.accuracy:.3f}, macro-F1 {rep.macro_f1:.3f}"
                  + (f", ECE {rep.ece:.3f}" if rep.ece is not None else ""))
    table = Table(title="per label")
    for col in ("label", "precision", "recall", "F1", "support"):
        table.add_column(col)
    for r in rep.per_class:
        table.add_row(r["label"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", str(r["support"]))
    console.print(table)
    cm = Table(title="confusion (rows = true, columns = predicted)")
    cm.add_column("")
    for lab in rep.labels:
        cm.add_column(lab[:12])
    for lab, row in zip(rep.labels, rep.confusion):
        cm.add_row(lab, *[str(v) for v in row])
    console.print(cm)
    for s in rep.by_slice:
        console.print(f"  {s['slice']}: n={s['n']} accuracy {s['accuracy']:.3f} macro-F1 {s['macro_f1']:.3f}")


def review(
    store: StoreOption = None,
    program: ProgramOption = DEFAULT_PROGRAM,
    n: Annotated[int, typer.Option(help="Items in the queue (half high-severity, half low-confidence).")] = 50,
    out: Annotated[Path | None, typer.Option(help="Write the queue to this CSV; fill its label column and "
                                                   "record it with --labels.")] = None,
    labels: Annotated[Path | None, typer.Option(help="CSV of reviewed items (feedback_id, label; optional task, "
                                                      "reviewer) to record.")] = None,
    reviewer: Annotated[str | None, typer.Option(help="Who reviewed (--labels; overrides a reviewer column).")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed of the queue.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """The human review queue: list or export items to label, or record a reviewer's labels."""
    import csv

    import numpy as np

    from insightroi.insights._review import EXPORT_COLUMNS, read_review_labels, review_queue, store_checked_labels
    from insightroi.program import load_program
    from insightroi.store import open_store

    prog = run_or_fail(load_program, program)
    with run_or_fail(open_store, store_url(store)) as st:
        if labels is not None:
            df, blank = run_or_fail(read_review_labels, labels, prog, st, reviewer=reviewer)
            res = {"file": str(labels), **run_or_fail(store_checked_labels, st, df, blank)}
            if as_json:
                _dump(res)
            else:
                console.print(f"recorded {res['recorded']} review labels from {labels} ({res['already_recorded']} "
                              f"already recorded, {blank} rows without a label skipped)", highlight=False)
            return
        q = run_or_fail(review_queue, st, prog, n, np.random.default_rng(seed))
    q = q.assign(label="")[EXPORT_COLUMNS]
    if out is not None:
        with out.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(EXPORT_COLUMNS)
            for r in q.itertuples(index=False):
                w.writerow(["" if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in r])
    if as_json:
        _dump({"items": q.to_dict(orient="records"), "out": str(out) if out else None})
        return
    if q.empty:
        console.print("the review queue is empty: nothing classified yet, or every candidate is reviewed")
        return
    table = Table(title=f"{len(q)} items to review" + (f" (written to {out})" if out else ""))
    for col in ("feedback_id", "model label", "confidence", "stratum", "text"):
        table.add_column(col)
    for r in q.itertuples():
        # Text(), not str: a "[bold]" in a customer's words is shown, not applied as markup
        table.add_row(Text(str(r.feedback_id)), Text(str(r.model_label)), f"{r.confidence:.2f}", str(r.stratum),
                      Text(" ".join(str(r.text).split())[:100]))
    console.print(table)
    if out is not None:
        console.print(f"fill the label column, then: insightroi review --labels {out} --reviewer NAME", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("classify")(classify)
    app.command("detect")(detect)
    app.command("themes")(themes)
    app.command("validate-model")(validate_model_cmd)
    app.command("review")(review)



