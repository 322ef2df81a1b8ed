"""Alerts on the demo world and on a real-text world: precision and recall of complaint episodes,
and praise spikes sent to owners (issue #18).

    python benchmarks/bench_alerts.py [quick|full] [--no-write]

Each world goes through the ``insightroi`` CLI as a user would run it, into a fresh DuckDB store:
``ingest`` -> ``classify`` (lexicon; ``--method seeded`` too in ``full``) -> ``detect --json``.
Only the alerts ``detect`` routes are scored (an alert about a control family is withheld by
design, so the demo world's control-arm defects are not counted).

Scoring (``tests/helpers/real_text_world.score_alerts``): an episode is found when an alert sent to
an owner (team not ``positive-themes``) has its family and topic and a day within the episode
+- 1 day; one alert counts per episode (a second one pages the owner twice and counts as false).
Precision = episodes found / alerts sent to owners. Praise to owners = owner-bound alerts on a
planted praise spike's family and days that match no episode, plus any ``praise``-topic alert sent
to an owner (the demo world plants no praise spike, so there it is the latter only).

The real-text world (``tests/helpers/real_text_world.py``) is human-written text from
/work/shared/reference: H&G tweets + UCI Amazon/Yelp sentences as background, their human-labelled
positive rows for praise spikes, and BANKING77 train.csv intents (chosen by meaning, before any
classifier read them) for the planted complaint episodes, at two intensities (``plain``: 2-7 extra
complaints a day; ``strong``: 5-10, the test's world). Nothing is fitted or tuned on any row.

Writes its own section of benchmarks/RESULTS.md between the ``bench_alerts`` markers.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from helpers.real_text_world import (  # noqa: E402
    EPISODE_INTENTS, REFERENCE, build_world, planted_text_reading, run_stages, score_alerts,
)
from insightroi.program import PRAISE_OWNER  # noqa: E402

import _sections  # noqa: E402  (benchmarks/ is the script's folder)

START, END = "<!-- bench_alerts:start -->", "<!-- bench_alerts:end -->"
# Two intensities: "plain" (2-7 extra complaints a day over ~30 items a family-day, praise 8-14) and
# "strong" (5-10, praise 15-25: the world of tests/insights/test_alerts_real_text.py at 4 families).
PLAIN = {"episode_per_day": (2.0, 7.0), "praise_per_day": (8.0, 14.0)}
STRONG = {"episode_per_day": (5.0, 10.0), "praise_per_day": (15.0, 25.0)}
SETTINGS = {
    "quick": {"real": {"n_days": 90, "n_families": 4, "n_episodes": 8, "n_praise": 1}, "seeds": (0,),
              "seeded": False, "demo_scale": "demo"},
    "full": {"real": {"n_days": 120, "n_families": 6, "n_episodes": 12, "n_praise": 2}, "seeds": (0, 1, 2),
             "seeded": True, "demo_scale": "demo"},
}


def real_text_case(work: Path, seed: int, method: str, world_kw: dict, strength: str = "plain") -> dict:
    """Build one real-text world, run the stages with ``method``, score the routed alerts."""
    wdir = work / f"real-{strength}-{seed}"
    world_kw = {**world_kw, **(STRONG if strength == "strong" else PLAIN)}
    w = build_world(wdir, seed=seed, reference=REFERENCE, **world_kw) if not (wdir / "truth.json").exists() else None
    truth = w.truth if w else json.loads((wdir / "truth.json").read_text())
    t0 = time.perf_counter()
    det = run_stages(wdir, wdir / f"{method}.duckdb", files={"feedback": wdir / "feedback.csv"}, method=method)
    secs = time.perf_counter() - t0
    sc = score_alerts(det["alerts"], truth["episodes"], truth["praise_spikes"], praise_owner=PRAISE_OWNER)
    reading = planted_text_reading(wdir / f"{method}.duckdb", wdir, det["classify"]["model_versions"])
    return {"world": f"real text ({strength}), seed {seed}", "method": method, "n_feedback": truth["n_feedback"],
            "seconds": secs, "classify_seconds": det["classify"].get("classify_seconds"), **sc, "reading": reading,
            "alerts": det["alerts"]}


def demo_case(work: Path, scale: str, seed: int = 0) -> dict:
    """The demo world's treatment-arm defect episodes (truth.json) against the routed alerts."""
    from insightroi.demo import generate_world

    wdir = work / f"demo-{scale}-{seed}"
    info = generate_world(wdir, seed=seed, scale=scale)
    truth = info.truth
    # The observed stream of a treatment family follows the treatment policy: its complaints stop
    # when the fix ships (end_treatment_policy), so the episode ends there.
    eps = [{"sku_family": d["sku_family"], "topic": d["topic"], "start": d["start"], "end": d["end_treatment_policy"]}
           for d in truth["defects"] if d["arm"] == "treatment"]
    t0 = time.perf_counter()
    det = run_stages(wdir, wdir / "lexicon.duckdb", method="lexicon",
                     files={"feedback": info.paths["feedback"], "annotations": info.paths["annotations"],
                            "assignments": info.paths["assignments"]})
    secs = time.perf_counter() - t0
    sc = score_alerts(det["alerts"], eps, [], praise_owner=PRAISE_OWNER)
    return {"world": f"demo ({scale}, seed {seed})", "method": "lexicon", "n_feedback": info.rows["feedback"],
            "seconds": secs, "classify_seconds": det["classify"].get("classify_seconds"), **sc,
            "withheld_control": det.get("withheld_control"),
            "control_episodes": sum(d["arm"] == "control" for d in truth["defects"]), "alerts": det["alerts"]}


def bench(scale: str = "quick", work: Path | None = None) -> list[dict]:
    """All cases of ``scale``; each result is one world x classify method.

    ``work`` keeps the worlds and stores for inspection; without it they go in a temporary folder
    that is removed at the end (the demo world and its stores are a few hundred MB).
    """
    if work is None:
        with tempfile.TemporaryDirectory(prefix="bench_alerts_") as tmp:
            return bench(scale, Path(tmp))
    cfg = SETTINGS[scale]
    work = Path(work)
    out = []
    for strength in ("plain", "strong"):
        for seed in cfg["seeds"]:
            out.append(real_text_case(work, seed, "lexicon", cfg["real"], strength))
            print(_line(out[-1]), flush=True)
    if cfg["seeded"]:
        out.append(real_text_case(work, cfg["seeds"][0], "seeded", cfg["real"]))
        print(_line(out[-1]), flush=True)
    out.append(demo_case(work, cfg["demo_scale"]))
    print(_line(out[-1]), flush=True)
    return out


def _line(r: dict) -> str:
    return (f"{r['world']} / {r['method']}: recall {r['found']}/{r['episodes']}, precision {r['found']}/"
            f"{r['owner_alerts']}, praise to owners {r['praise_to_owners']}, {r['seconds']:.0f} s")


def _f(v, d: int = 2) -> str:
    return "-" if v is None else f"{v:.{d}f}"


def render(rows: list[dict], scale: str, seconds: float) -> str:
    """The RESULTS.md section."""
    L = [START, "", "## Alerts: complaint episodes found, praise kept off owners' desks (`benchmarks/bench_alerts.py`, issue #18)", "",
         f"Run {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, scale `{scale}`, {seconds:,.0f} s on "
         f"{os.cpu_count()} shared cores. Every world runs `insightroi ingest` -> `classify` -> `detect --json` (defaults: "
         "alpha 1e-3, 1/3/7/14-day windows) into a fresh DuckDB store. An episode is found when an alert routed to an "
         "owner has its family and topic and a day within the episode +- 1 day, one alert per episode; precision = "
         "episodes found / alerts routed to owners. Praise to owners: alerts sent to a team other than "
         f"`{PRAISE_OWNER}` on a planted praise spike (family, days +- 1) that match no episode, or on the `praise` topic.", "",
         "Real-text world: background = all H&G tweets + UCI Amazon/Yelp sentences (about 30 a family-day); praise spikes "
         "= their human-labelled positive rows for 3-5 days; complaint episodes = BANKING77 "
         "**train.csv** queries for 3-10 days in one family (the same pools at 0.4 a family-day "
         "everywhere as a base rate). Extra items a day: *plain* episodes 2-7, praise 8-14; *strong* episodes 5-10, "
         "praise 15-25. Intents: "
         + "; ".join(f"`{t}` <- {', '.join(v)}" for t, v in EPISODE_INTENTS.items())
         + ". No row of any set is used to fit or tune anything; BANKING77 test.csv is not read.", "",
         "| world | classify | feedback rows | episodes | found (recall) | alerts to owners | precision | "
         "missed episodes whose alert went to the praise stream | praise spikes seen in the positive stream | "
         "praise to owners | per topic found/planted | stages (s) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        per = ", ".join(f"{t} {a}/{b}" for t, (a, b) in sorted(r["per_topic"].items()))
        praise_seen = f"{r['praise_spikes_seen']}/{r['praise_spikes']}" if r["praise_spikes"] else "none planted"
        L.append(f"| {r['world']} | {r['method']} | {r['n_feedback']:,} | {r['episodes']} | {r['found']} "
                 f"({_f(r['recall'])}) | {r['owner_alerts']} | {_f(r['precision'])} | {r['episodes_in_praise_stream']} | "
                 f"{praise_seen} | **{r['praise_to_owners']}** | {per} | {r['seconds']:.0f} |")
    demo = [r for r in rows if r["world"].startswith("demo")]
    for r in demo:
        L += ["", f"Demo world: {r['control_episodes']} control-arm defect episodes are not scored (their "
              f"{r['withheld_control']} alerts are withheld from owners by design); treatment episodes end at "
              "`end_treatment_policy`."]
    L += ["", "### Why real-text episodes are missed: how the classifier read the planted rows", "",
          "Share of the rows planted in episodes given the episode's topic as primary label, and read positive / "
          "negative by the sentiment model (rows are unrated chat, so the detector's praise test uses the sentiment "
          "model).", "",
          "| world | classify | pool | rows | given the topic | read positive | read negative |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        for pool, v in sorted((r.get("reading") or {}).items()):
            L.append(f"| {r['world']} | {r['method']} | {pool} | {v['n']} | {_f(v['topic_share'])} | "
                     f"{_f(v['positive_share'])} | {_f(v['negative_share'])} |")
    L += ["", "Episodes not found (real-text worlds):", ""]
    for r in rows:
        if r["world"].startswith("real"):
            for m in r["missed"]:
                L.append(f"- {r['world']} / {r['method']}: `{m['topic']}` in {m['sku_family']} {m['start']}..{m['end']} "
                         f"({m['planted']} rows, {m['extra_per_day']}/day)"
                         + (" - detected, but routed to the praise stream" if m["in_praise_stream"] else ""))
    L += ["", END]
    return "\n".join(L)


def write_section(text: str, path: Path = HERE / "RESULTS.md") -> None:
    _sections.write_section(text, START, END, path)


def run(scale: str = "full") -> list[dict]:
    """Rows for ``benchmarks/run.py``: one per world x method (the full table goes to RESULTS.md)."""
    return [{"benchmark": f"alerts: {r['world']}, {r['method']}", "ours_s": r["seconds"], "peer": None,
             "peer_s": None, "ratio": None,
             "note": f"recall {r['found']}/{r['episodes']}, precision {_f(r['precision'])}, "
                     f"praise to owners {r['praise_to_owners']}"} for r in bench(scale)]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    write = "--no-write" not in argv
    argv = [a for a in argv if a != "--no-write"]
    scale = argv[0] if argv else "quick"
    if scale not in SETTINGS:
        raise SystemExit(f"usage: bench_alerts.py [quick|full] [--no-write]; got {scale!r}")
    t0 = time.perf_counter()
    rows = bench(scale)
    text = render(rows, scale, time.perf_counter() - t0)
    print(text)
    if write:
        write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
