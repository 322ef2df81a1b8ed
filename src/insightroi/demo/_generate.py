"""``generate_world``: write the simulated company, its program file and its ground truth."""

from __future__ import annotations

import json
import re
import math
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
# Data generation, not inference: the demo only needs the chi-square tail to make its broken
# assignment fail the SRM check by a known margin.
from scipy.stats import chi2 as chi2_dist

from insightroi.demo._cx import (
    CxDraws, CxTruthAccumulator, activate_cx_block, cx_tables_declared, cx_truth, empty_cx_sums,
)
from insightroi.demo._rows import ChunkWriter, arrow_schema
from insightroi.demo._world import (
    CATEGORIES, SCALES, SUPPORTED_MEASURES, TOPICS, CellWorld, family_sums, simulate_cells,
)
from insightroi.errors import check_option
from insightroi.program import Program, load_program, parse_program, starter_program_text
from insightroi.store import TABLES, user_table_spec

__all__ = ["WorldInfo", "generate_world", "world_cells", "resolve_scale", "kpi_truth", "TABLE_KINDS"]

TABLE_KINDS = (
    "products", "orders", "feedback", "tickets", "refunds", "traffic", "assignments", "annotations", "chain_events",
)
_CHUNKED = ("orders", "feedback", "tickets", "refunds", "traffic", "labels")
_LABEL_SCHEMA = pa.schema([("id", pa.string()), ("true_topics", pa.list_(pa.string())), ("true_sentiment", pa.string())])
# Above this many orders, feedback text comes from pools of pre-rendered texts (speed).
_TEXT_POOL_ABOVE = 2_000_000
_DEFAULT_CHUNK_ORDERS = 1_000_000


@dataclass(frozen=True)
class WorldInfo:
    """What :func:`generate_world` wrote.

    Attributes
    ----------
    out_dir : Path
    paths : dict[str, Path]
        Store table kind -> a Parquet file, or a folder of ``part-*.parquet`` files at large scale.
        Only ingestible store tables (products, orders, feedback, tickets, refunds, traffic,
        assignments, annotations, chain_events), then the CX block's user tables the program
        declares (``user_surveys``, ``user_customers``: ingested like ``insightroi ingest --table``).
    labels_path : Path
        Hidden true labels per feedback row (``id, true_topics, true_sentiment``); not a store table.
    truth_path, program_path : Path
        ``truth.json`` and ``insightroi.toml``.
    truth : dict
        The parsed truth.json.
    rows : dict[str, int]
        Rows written per kind (bad rows included; ``labels`` too).
    seed : int
    scale : str | int
    n_orders : int
        Orders written (bad rows excluded).
    bad_rows : dict[str, int]
        Bad rows injected per kind (sums to the ``bad_rows`` argument).
    """

    out_dir: Path
    paths: dict[str, Path]
    labels_path: Path
    truth_path: Path
    program_path: Path
    truth: dict[str, Any]
    rows: dict[str, int]
    seed: int
    scale: str | int
    n_orders: int
    bad_rows: dict[str, int] = field(default_factory=dict)


def resolve_scale(scale: str | int) -> tuple[int, int]:
    """(expected orders, SKU families) for a scale preset name or an order count."""
    if isinstance(scale, bool):
        raise ValueError(f"scale must be one of {sorted(SCALES)} or an int number of orders, got {scale!r}")
    if isinstance(scale, (int, np.integer)):
        n = int(scale)
        if not 1_000 <= n <= 100_000_000:
            raise ValueError(f"scale as a number of orders must be within 1,000..100,000,000, got {n:,}")
        return n, (40 if n < 20_000 else 64 if n < 200_000 else 80)
    if isinstance(scale, str) and scale.isdigit():
        return resolve_scale(int(scale))
    check_option("scale", scale, tuple(SCALES))
    return SCALES[scale]


# The starter's cost stack (fixed monthly and one-off lines) is sized for a company of this many
# orders over the world's 15 months; the demo program scales those lines to the world's size so
# its economics (ROI) are the same at every scale. Volume-priced lines scale by themselves.
REFERENCE_ORDERS = 12_000_000


def _scaled_starter(n_orders: int) -> str:
    factor = n_orders / REFERENCE_ORDERS
    amount = re.compile(r"(?m)^amount = \{ low = ([0-9.]+), mode = ([0-9.]+), high = ([0-9.]+) \}")

    def repl(m):
        lo, mo, hi = (round(float(x) * factor, 2) for x in m.groups())
        return f"amount = {{ low = {lo}, mode = {mo}, high = {hi} }}"

    blocks = re.split(r"(?m)^(?=\[)", starter_program_text())
    blocks = [amount.sub(repl, b) if b.startswith("[[costs]]") and "1000_feedback" not in b else b for b in blocks]
    header = (f"# Demo world: the starter program with its fixed cost lines scaled by {factor:.6g}\n"
              f"# (a world of ~{n_orders:,} orders; the starter's costs are sized for {REFERENCE_ORDERS:,}).\n")
    return header + "".join(blocks)


def _load(program, n_orders: int) -> tuple[Program, str]:
    if program is None:
        # The demo world writes the CX block's tables, so its program runs the block's KPIs.
        text = activate_cx_block(_scaled_starter(n_orders))
        return parse_program(text, "demo program"), text
    if isinstance(program, Program):
        raise TypeError("pass the program as a path to its TOML file (the world writes the file's text)")
    p = Path(program)
    if p.is_dir():
        p = p / "insightroi.toml"
    prog = load_program(p)
    return prog, p.read_text(encoding="utf-8")


def world_cells(seed: int = 0, scale: str | int = "small", program: Program | None = None) -> CellWorld:
    """The cell-level world (both policies, no files): the same draws :func:`generate_world` writes.

    Use it for fast simulation studies: :func:`insightroi.demo._world.family_sums` gives per-family
    KPI numerators/denominators under "treatment", "control" or "observed" policies.
    """
    if program is None:
        program = parse_program(starter_program_text(), "starter program")
    n, fams = resolve_scale(scale)
    return simulate_cells(seed, n, fams, program)


def _kpi_value(sums: dict, kpi, sel: np.ndarray) -> float:
    num = sums[kpi.numerator][sel].sum()
    den = sums[kpi.denominator][sel].sum()
    return float(kpi.scale * num / den) if den > 0 else float("nan")


def kpi_truth(world: CellWorld, program: Program, cx_sums: dict | None = None) -> dict[str, dict[str, float | None]]:
    """True effects per KPI: ATE over all families, relative ATE, ATT, avoided events in treated.

    The estimand is the finite-population effect of this seed's world: the KPI (a ratio of sums
    over the analysis window) with every family under the treatment policy minus with every
    family under the control policy, both computed from the same draws (common random numbers).
    The starter's CX KPIs (surveys, customers, star rating, resolution time) get theirs from
    :func:`insightroi.demo._cx.cx_truth`; ``cx_sums`` passes its per-family sums when the
    generator has accumulated them already.
    """
    s_t = family_sums(world, "treatment")
    s_c = family_sums(world, "control")
    F = len(world.fam_ids)
    all_ = np.ones(F, bool)
    tr = world.fam_treated
    out: dict[str, dict[str, float | None]] = {}
    for kpi in program.kpis:
        if kpi.numerator not in SUPPORTED_MEASURES or kpi.denominator not in SUPPORTED_MEASURES:
            out[kpi.name] = {"ate": None, "ate_relative": None, "att": None, "avoided_events_treated": None,
                             "note": "workflow/model measure with no counterfactual in the simulation"}
            continue
        kc = _kpi_value(s_c, kpi, all_)
        ate = _kpi_value(s_t, kpi, all_) - kc
        att = _kpi_value(s_t, kpi, tr) - _kpi_value(s_c, kpi, tr) if tr.any() else float("nan")
        out[kpi.name] = {
            "ate": ate,
            "ate_relative": ate / kc if kc else None,
            "att": att,
            "avoided_events_treated": float(s_c[kpi.numerator][tr].sum() - s_t[kpi.numerator][tr].sum()),
            "control_value": kc,
            "treatment_value": kc + ate,
        }
    out.update(cx_truth(world, program, cx_sums))
    return out


def _roi_truth(kpis: dict, program: Program, world: CellWorld, feedback_treated: float) -> dict:
    months = float(world.window.sum()) / 30.4375
    hard = soft = 0.0
    pools = []
    for pool in program.value_pools:
        avoided = kpis[pool.kpi]["avoided_events_treated"] or 0.0
        value = avoided * pool.unit_value.mode
        pools.append({"name": pool.name, "kpi": pool.kpi, "hard": pool.hard, "avoided": avoided, "value": value})
        if pool.hard:
            hard += value
        else:
            soft += value
    cost = 0.0
    for c in program.costs:
        if c.kind == "one_off" or c.per == "total":
            cost += c.amount.mode
        elif c.per == "month":
            cost += c.amount.mode * months
        else:  # per 1000 feedback items of treated units in the window
            cost += c.amount.mode * feedback_treated / 1000
    return {
        "benefit_hard": hard, "benefit_soft": soft, "cost": cost,
        "roi": (hard - cost) / cost if cost else None, "bcr": hard / cost if cost else None,
        "months": months, "pools": pools,
    }


def _iso(world: CellWorld, day: int) -> str:
    return (world.start + timedelta(days=int(day))).isoformat()


def _ts(world: CellWorld, day: float) -> datetime:
    return datetime(world.start.year, world.start.month, world.start.day, tzinfo=timezone.utc) + timedelta(days=float(day))


def _products(world: CellWorld) -> pa.Table:
    cats = [CATEGORIES[world.fam_cat[f]] for f in world.sku_fam]
    names = [f"{c.title()} model {i.split('-')[1].upper()}-{i.split('-')[-1]}" for c, i in zip(cats, world.sku_ids)]
    return pa.table({
        "sku": world.sku_ids, "product_id": [f"P-{s}" for s in world.sku_ids],
        "sku_family": [world.fam_ids[f] for f in world.sku_fam], "category": cats, "name": names,
        "price": world.sku_price.astype(float), "unit_cost": world.sku_cost.astype(float),
        "launched_at": pa.array([_ts(world, d) for d in world.sku_launch], pa.timestamp("us", tz="UTC")),
    }, schema=arrow_schema(TABLES["products"].columns))


def _assignments(world: CellWorld, program: Program, bad: bool, rng) -> tuple[pa.Table, dict]:
    arms = ["treatment" if t else "control" for t in world.fam_treated]
    info: dict = {}
    if bad:
        # A broken assignment pipeline: control families recorded as treated (their data still
        # behave as control). Flip at least a third of control, and enough that a unit-count
        # chi-square sample-ratio test against the design share has p < 1e-4.
        share = program.experiment.treatment_share
        ctrl = [int(i) for i in rng.permutation([i for i, a in enumerate(arms) if a == "control"])]
        n = len(arms)
        flip: list[int] = []
        for i in ctrl:
            n_t = sum(a == "treatment" for a in arms)
            chi2 = (n_t - share * n) ** 2 / (share * n) + ((n - n_t) - (1 - share) * n) ** 2 / ((1 - share) * n)
            if len(flip) >= len(ctrl) / 3 and chi2_dist.sf(chi2, 1) < 1e-4:
                break
            arms[i] = "treatment"
            flip.append(i)
        info = {"reassigned_to_treatment": sorted(world.fam_ids[i] for i in flip)}
    at = _ts(world, world.window_start)
    return pa.table({
        "id": [f"asg-{program.experiment.name}-{f}" for f in world.fam_ids],
        "experiment": [program.experiment.name] * len(arms), "unit_type": ["sku_family"] * len(arms),
        "unit_id": list(world.fam_ids), "arm": arms,
        "assigned_at": pa.array([at] * len(arms), pa.timestamp("us", tz="UTC")),
    }, schema=arrow_schema(TABLES["assignments"].columns)), info


def _annotations(world: CellWorld) -> pa.Table:
    rows = []
    for i, p in enumerate(world.promotions):
        rows.append(("promotion", p["start"], p["end"], p["scope"], f"{int(p['discount'] * 100)}% off sale"))
    so = world.stockout
    rows.append(("stockout", so["start"], so["end"], f"sku_family:{world.fam_ids[so['family']]}",
                 "supplier stockout: whole family unavailable"))
    o = world.outage
    rows.append(("outage", o["start"], o["end"], "all", "carrier outage: national parcel carrier network down"))
    return pa.table({
        "id": [f"ann-{i:03d}" for i in range(len(rows))],
        "kind": [r[0] for r in rows],
        "start_time": pa.array([_ts(world, r[1]) for r in rows], pa.timestamp("us", tz="UTC")),
        "end_time": pa.array([_ts(world, r[2]) for r in rows], pa.timestamp("us", tz="UTC")),
        "scope": [r[3] for r in rows], "description": [r[4] for r in rows],
    }, schema=arrow_schema(TABLES["annotations"].columns))


def _chain_events(world: CellWorld, program: Program, tmask_fam: np.ndarray, rng) -> pa.Table:
    """The decision chain as it happened under each family's policy."""
    owner = {t.topic: t.owner for t in program.taxonomy}
    end_ts = _ts(world, world.n_days)
    rows: list[dict] = []
    n = [0]

    def ev(etype, day, **kw):
        ts = _ts(world, day)
        if ts >= end_ts:
            return
        rows.append({"event_type": etype, "event_time": ts, **kw})

    def person(team):
        return f"{team}.{['ana', 'ben', 'chen', 'dara', 'eli', 'fay'][int(rng.integers(6))]}"

    def alert_seq(day, topic, sku, fam, outcome, fix_day=None, region=None, payload=None):
        n[0] += 1
        aid, iid = f"alert-{n[0]:05d}", f"insight-{n[0]:05d}"
        team = owner.get(topic, "support")
        base = {"alert_id": aid, "insight_id": iid, "team": team, "topic": topic, "sku": sku, "sku_family": fam,
                "region": region}
        ev("insight", day, actor="insight-model", payload=json.dumps(payload or {"signal": "complaint spike"}), **base)
        ev("alert_delivered", day + 5 / 1440, actor="alert-router", payload=json.dumps({"channel": "slack"}), **base)
        if outcome == "ignored":
            ev("ignored", day + 7, actor="alert-router", payload=json.dumps({"reason": "no response within 7 days"}), **base)
            return
        ack = day + float(np.exp(rng.normal(np.log(10), 0.6))) / 24
        ev("acknowledged", ack, actor=person(team), payload="{}", **base)
        if outcome == "overridden":
            ev("overridden", ack + 0.05, actor=person(team),
               payload=json.dumps({"reason": "known issue, handled in the normal release cycle"}), **base)
            return
        ev("action_taken", ack + float(rng.uniform(0.05, 0.5)), actor=person(team),
           payload=json.dumps({"action": "investigation opened with supplier / ops"}), **base)
        if fix_day is not None:
            ev("fix_deployed", fix_day + float(rng.uniform(0.3, 0.7)), actor=person(team), payload="{}", **base)
            ev("outcome", fix_day + 14.5, actor="insightroi", payload=json.dumps({"measured_after_days": 14}), **base)

    for d in world.defects:
        sku = world.sku_ids[d.sku]
        fam = world.fam_ids[d.family]
        treated = bool(tmask_fam[d.family])
        if treated and d.outcome != "pre_program":
            alert_seq(d.detect + float(rng.uniform(0.3, 0.9)), d.topic, sku, fam, d.outcome,
                      fix_day=d.end_t if d.outcome == "fixed" else None,
                      payload={"signal": "complaint spike", "severity": "high"})
        if not treated and d.detect >= world.window_start:
            # The model runs everywhere, but alerts are suppressed in the holdout.
            n[0] += 1
            ev("insight", d.detect + 0.5, alert_id=None, insight_id=f"insight-{n[0]:05d}", actor="insight-model",
               team=owner.get(d.topic, "support"), topic=d.topic, sku=sku, sku_family=fam, region=None,
               payload=json.dumps({"suppressed": "holdout"}))
        if not treated or d.outcome != "fixed":
            # The manual process eventually finds and fixes it (no alert id: links must be inferred).
            ev("fix_deployed", d.end_c + 0.5, alert_id=None, insight_id=None, actor="qa.manual-review",
               team=owner.get(d.topic, "support"), topic=d.topic, sku=sku, sku_family=fam, region=None,
               payload=json.dumps({"source": "manual_process"}))
    # Alerts that are not about a defect: noise spikes and the carrier outage.
    ws, we = world.window_start, world.window_end
    for f in np.flatnonzero(tmask_fam):
        for _ in range(int(rng.poisson(0.6))):
            topic = ["shipping_delay", "sizing", "price_value", "customer_service", "damaged_packaging"][int(rng.integers(5))]
            outcome = ["ignored", "overridden", "acted"][int(rng.choice(3, p=[0.35, 0.2, 0.45]))]
            sku_i = int(rng.choice(np.flatnonzero(world.sku_fam == f)))
            alert_seq(float(rng.uniform(ws, we)), topic, world.sku_ids[sku_i], world.fam_ids[f], outcome)
    o = world.outage
    alert_seq(o["start"] + 1.2, "shipping_delay", None, None, "acted",
              payload={"signal": "complaint spike across all families", "scope": "all"})
    rows.sort(key=lambda r: (r["event_time"], r["event_type"]))
    schema = arrow_schema(TABLES["chain_events"].columns)
    cols = {c: [r.get(c) for r in rows] for c in schema.names if c != "id"}
    cols["id"] = [f"ce-{i:06d}" for i in range(len(rows))]
    return pa.table({c: cols[c] for c in schema.names}, schema=schema)


# ---- bad rows -----------------------------------------------------------------------------------

# (kind, fault, written as). Faults a typed Parquet column cannot hold (an unparseable timestamp,
# text in a numeric column) go to a JSONL file next to the Parquet part, as a messy export would.
_BAD_PLAN = (
    ("orders", "missing_id", "parquet"), ("feedback", "unknown_source", "parquet"),
    ("tickets", "bad_timestamp", "jsonl"), ("refunds", "missing_id", "parquet"),
    ("feedback", "bad_timestamp", "jsonl"), ("traffic", "wrong_type", "jsonl"),
    ("orders", "missing_time", "parquet"), ("feedback", "missing_id", "parquet"),
    ("chain_events", "missing_time", "parquet"), ("orders", "wrong_type", "jsonl"),
    ("refunds", "bad_enum", "parquet"), ("feedback", "wrong_type", "jsonl"),
    ("annotations", "bad_enum", "parquet"), ("tickets", "missing_id", "parquet"),
)
_TIME_COL = {"orders": "order_time", "feedback": "event_time", "tickets": "opened_at", "refunds": "event_time",
             "traffic": "date", "chain_events": "event_time", "annotations": "start_time"}
_WRONG_TYPE = {"orders": ("revenue", "twelve dollars"), "traffic": ("sessions", "many"),
               "feedback": ("rating", "five stars")}
_BAD_ENUM = {"refunds": ("kind", "store_credit"), "annotations": ("kind", "earthquake")}


def _jsonable(v):
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return v


def _inject_bad(tables: dict[str, pa.Table], n_bad: int, rng) -> tuple[dict[str, int], dict[str, list[dict]]]:
    """Add exactly ``n_bad`` corrupted copies of real rows, spread over kinds and faults.

    Returns the count per kind and the rows that go to a JSONL file per kind (the others are
    appended to the kind's Parquet table in place).
    """
    per_kind: dict[str, int] = {}
    plan = [p for p in _BAD_PLAN if tables.get(p[0]) is not None and tables[p[0]].num_rows > 0]
    if n_bad and not plan:
        raise RuntimeError("no rows to base bad rows on")
    extra: dict[str, list[dict]] = {}
    jsonl: dict[str, list[dict]] = {}
    for i in range(n_bad):
        kind, fault, fmt = plan[i % len(plan)]
        tab = tables[kind]
        row = tab.slice(int(rng.integers(tab.num_rows)), 1).to_pylist()[0]
        row["id"] = f"bad-{i:06d}"
        if fault == "missing_id":
            row["id"] = None
        elif fault == "missing_time":
            row[_TIME_COL[kind]] = None
        elif fault == "unknown_source":
            row["source"] = "carrier_pigeon"
        elif fault == "bad_enum":
            col, val = _BAD_ENUM[kind]
            row[col] = val
        if fmt == "jsonl":
            row = {k: _jsonable(v) for k, v in row.items()}
            if fault == "bad_timestamp":
                row[_TIME_COL[kind]] = "2025-02-30T25:61:00+00:00"
            elif fault == "wrong_type":
                col, val = _WRONG_TYPE[kind]
                row[col] = val
            jsonl.setdefault(kind, []).append(row)
        else:
            extra.setdefault(kind, []).append(row)
        per_kind[kind] = per_kind.get(kind, 0) + 1
    for kind, rows_ in extra.items():
        tables[kind] = pa.concat_tables([tables[kind], pa.Table.from_pylist(rows_, schema=tables[kind].schema)])
    return per_kind, jsonl


# ---- the public entry point -----------------------------------------------------------------------

def generate_world(
    out_dir: str | Path,
    *,
    seed: int = 0,
    scale: str | int = "small",
    bad_rows: int = 0,
    bad_assignment: bool = False,
    program: str | Path | None = None,
    chunk_orders: int | None = None,
    policy: str = "observed",
) -> WorldInfo:
    """Generate the simulated company with ground truth and write it to ``out_dir``.

    The world is an e-commerce company over 15+ months (181 days before the program's experiment
    window, then the window): SKU families with prices and margins, regions and segments, daily
    orders with weekly and yearly seasonality, a holiday peak, promotions and a stockout, one carrier
    outage, feedback text (reviews, tickets, chats, returns), product defects that raise complaints
    and lower conversion until fixed, and the AI-insight program run as a cluster-randomised
    persistent holdout over SKU families. Both policies are simulated for every family with common
    random numbers, so ``truth.json`` holds the exact potential-outcome effects (the finite-population
    ATE of each KPI's ratio of sums over the window) and the realised ROI.

    Parameters
    ----------
    out_dir : path
        Folder to write (created; existing world files are replaced).
    seed : int
        Same seed, same bytes.
    scale : {"tiny", "small", "demo"} or int
        "tiny" ~4k orders / 40 families, "small" ~50k / 48, "demo" ~400k / 60, or an expected
        number of orders (1,000 .. 100,000,000), generated in chunks of days.
    bad_rows : int
        Add exactly this many invalid rows, spread over kinds and faults: missing ids or required
        timestamps, unknown feedback source or refund/annotation kind (in the Parquet files), and
        unparseable timestamps or text in numeric columns (in a ``bad-rows.jsonl`` beside the
        Parquet part, so such a kind is written as a folder). Ingestion must quarantine all of them.
    bad_assignment : bool
        Corrupt the experiment: enough control families (at least a third) are recorded as
        treatment in ``assignments`` that a unit-count sample-ratio-mismatch test has p < 1e-4;
        their data still follow the control policy. ``truth.json`` still describes the true world
        and lists the corrupted families under ``bad_assignment``.
    program : path, optional
        Program file to generate for; default the starter program (whose dates fit the world).
    chunk_orders : int, optional
        Orders per chunk (memory bound); default 1,000,000.
    policy : {"observed", "treatment", "control"}
        Debug switch: write every family under one policy (for brute-force truth checks).

    Returns
    -------
    WorldInfo
    """
    check_option("policy", policy, ("observed", "treatment", "control"))
    if int(bad_rows) < 0:
        raise ValueError(f"bad_rows must be >= 0, got {bad_rows}")
    n_target, n_fam = resolve_scale(scale)
    prog, prog_text = _load(program, n_target)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = simulate_cells(seed, n_target, n_fam, prog)
    rng = np.random.default_rng([seed, 3])

    tmask = world.policy_mask(policy)
    n_obs = world.orders(tmask)
    per_day = n_obs.sum(axis=0)
    chunk_orders = int(chunk_orders or _DEFAULT_CHUNK_ORDERS)
    bounds = [0]
    acc = 0
    for d in range(world.n_days):
        acc += int(per_day[d])
        if acc >= chunk_orders and d + 1 < world.n_days:
            bounds.append(d + 1)
            acc = 0
    bounds.append(world.n_days)
    chunked = len(bounds) > 2
    writer = ChunkWriter(world, prog, policy=policy, text_pool=n_target > _TEXT_POOL_ABOVE)
    # The CX block's own tables (user_<name>), when the program declares them as the starter does.
    cx_names = cx_tables_declared(prog)
    user_kinds = tuple(f"user_{t}" for t in cx_names)
    cx_draws = CxDraws(world) if cx_names else None
    cx_sums = empty_cx_sums(len(world.fam_ids))
    cx_acc = CxTruthAccumulator(world, cx_sums)
    cx_counters: dict[str, int] = {}

    # Clean out what a previous world left.
    for kind in (*TABLE_KINDS, "labels", "user_surveys", "user_customers"):
        for p in (out / f"{kind}.parquet", out / kind):
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()

    schemas = {k: arrow_schema(TABLES[k].columns) for k in TABLE_KINDS}
    schemas["labels"] = _LABEL_SCHEMA
    for t in prog.tables:
        if t.name in cx_names:
            schemas[f"user_{t.name}"] = arrow_schema(user_table_spec(t).columns)
    rows = {k: 0 for k in (*TABLE_KINDS, *user_kinds, "labels")}
    paths: dict[str, Path] = {}
    bad_per_kind: dict[str, int] = {}
    tmask_fam = world.fam_treated if policy == "observed" else np.full(len(world.fam_ids), policy == "treatment")

    small_tables = {
        "products": _products(world),
        "annotations": _annotations(world),
        "chain_events": _chain_events(world, prog, tmask_fam, rng),
    }
    assign_tab, corruption = _assignments(world, prog, bad_assignment, rng)
    small_tables["assignments"] = assign_tab

    folder_kinds: set[str] = set(_CHUNKED) | set(user_kinds) if chunked else set()

    def write(kind: str, tab: pa.Table, part: int):
        tab = tab.cast(schemas[kind]) if tab.schema != schemas[kind] else tab
        if kind in folder_kinds:
            (out / kind).mkdir(exist_ok=True)
            p = out / kind / f"part-{part:05d}.parquet"
            paths[kind] = out / kind
        else:
            p = out / f"{kind}.parquet"
            paths[kind] = p
        pq.write_table(tab, p, compression="zstd")
        rows[kind] += tab.num_rows

    for ci, (d0, d1) in enumerate(zip(bounds[:-1], bounds[1:])):
        crng = np.random.default_rng([seed, 1, ci])
        tabs = {"orders": writer.orders(d0, d1), "traffic": writer.traffic(d0, d1)}
        tabs.update(writer.events(d0, d1, crng))
        for kind in _CHUNKED:
            if kind not in tabs:
                tabs[kind] = schemas[kind].empty_table()
        if ci == 0:
            tabs.update(small_tables)
            bad_per_kind, bad_jsonl = _inject_bad(tabs, int(bad_rows), rng)
            folder_kinds |= set(bad_jsonl)
            for kind, jrows in bad_jsonl.items():
                (out / kind).mkdir(exist_ok=True)
                with open(out / kind / "bad-rows.jsonl", "w", encoding="utf-8") as fh:
                    for r in jrows:
                        fh.write(json.dumps(r) + "\n")
                rows[kind] += len(jrows)
            for kind in small_tables:
                write(kind, tabs.pop(kind), 0)
        for kind, tab in tabs.items():
            write(kind, tab, ci)
        del tabs
        if cx_draws is not None:
            # Drawn after the built-in tables, from streams of their own: those stay the same bytes.
            for name, tab in cx_draws.tables(d0, d1, tmask, prog, cx_counters, on_day=cx_acc.add).items():
                write(f"user_{name}", tab, ci)

    labels_path = paths.pop("labels")
    n_orders_written = rows["orders"] - bad_per_kind.get("orders", 0)

    # ---- truth ------------------------------------------------------------------------------------
    kpis = kpi_truth(world, prog, cx_sums if cx_draws is not None else None)
    obs = family_sums(world, "observed")
    fb_treated = float(obs["feedback"][world.fam_treated].sum())
    roi = _roi_truth(kpis, prog, world, fb_treated)
    truth: dict[str, Any] = {
        "seed": int(seed), "scale": scale if isinstance(scale, str) else int(scale),
        "n_orders": int(n_orders_written),
        "window": {"start": _iso(world, world.window_start), "end": _iso(world, world.window_end),
                   "days": int(world.window.sum())},
        "world": {"start": _iso(world, 0), "end": _iso(world, world.n_days - 1), "n_days": world.n_days,
                  "n_families": len(world.fam_ids), "n_skus": len(world.sku_ids)},
        "estimand": ("finite-population ATE of each KPI's ratio of sums over the analysis window: every "
                     "family under the treatment policy minus every family under the control policy, "
                     "same draws (common random numbers); att: the same over treated-arm families only"),
        "kpis": kpis,
        "roi": roi,
        "defects": [
            {"sku_family": world.fam_ids[d.family], "sku": world.sku_ids[d.sku], "topic": d.topic,
             "start": _iso(world, d.start), "end_treatment_policy": _iso(world, d.end_t),
             "end_control_policy": _iso(world, d.end_c), "detected": _iso(world, d.detect),
             "alert_outcome": d.outcome, "arm": "treatment" if world.fam_treated[d.family] else "control"}
            for d in world.defects
        ],
        "shocks": [{"kind": "outage", "topic": "shipping_delay", "scope": "all",
                    "start": _iso(world, world.outage["start"]), "end": _iso(world, world.outage["end"])}],
        "stockout": {"sku_family": world.fam_ids[world.stockout["family"]],
                     "start": _iso(world, world.stockout["start"]), "end": _iso(world, world.stockout["end"])},
        "promotions": [{"scope": p["scope"], "start": _iso(world, p["start"]), "end": _iso(world, p["end"]),
                        "discount": p["discount"]} for p in world.promotions],
        "new_theme": {"topic": "counterfeit", "start": _iso(world, world.new_theme["start"]),
                      "families": world.new_theme["families"], "in_taxonomy": False},
        "assignment": {"treatment": [f for f, t in zip(world.fam_ids, world.fam_treated) if t],
                       "control": [f for f, t in zip(world.fam_ids, world.fam_treated) if not t]},
        "family_sums": {"note": "per-family sums over the window, arrays in assignment order of 'families'",
                        "families": list(world.fam_ids),
                        "observed": {m: [float(x) for x in v] for m, v in obs.items()}},
        "bad_rows": {"total": int(bad_rows), "per_kind": bad_per_kind},
        "bad_assignment": ({"reassigned_to_treatment": corruption.get("reassigned_to_treatment", []),
                            "note": "assignments.parquet records these control families as treatment; "
                                    "their data follow the control policy"} if bad_assignment else None),
        "policy_written": policy,
        "topics": list(TOPICS[:-1]),
    }
    truth = _clean(truth)
    truth_path = out / "truth.json"
    truth_path.write_text(json.dumps(truth, indent=1, allow_nan=False, default=_json_default), encoding="utf-8")
    if program is None:
        # The demo measures the realized ROI of what was run, the quantity its truth is: so its
        # program's horizon is the analysis window (a user's program projects over its own).
        prog_text = re.sub(r"(?m)^horizon_months = .*$", f"horizon_months = {roi['months']:.6f}", prog_text, count=1)
    program_path = out / "insightroi.toml"
    program_path.write_text(prog_text, encoding="utf-8")
    return WorldInfo(
        out_dir=out, paths={k: paths[k] for k in (*TABLE_KINDS, *user_kinds)}, labels_path=labels_path, truth_path=truth_path,
        program_path=program_path, truth=json.loads(truth_path.read_text(encoding="utf-8")), rows=rows,
        seed=int(seed), scale=scale, n_orders=int(n_orders_written), bad_rows=bad_per_kind,
    )


def _clean(o):
    """NaN -> None recursively (truth.json is strict JSON)."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (float, np.floating)):
        f = float(o)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        f = float(o)
        return None if math.isnan(f) else f
    if isinstance(o, (date, datetime)):
        return o.isoformat()
    raise TypeError(f"not JSON-able: {type(o)}")
