"""The demo world's CX tables (post-purchase surveys, new customers) and the true effects on them.

The starter program's CX KPIs (between ``# >>> CX KPIs`` and ``# <<< CX KPIs``) read two tables of
the user's own, ``surveys`` and ``customers``; the demo writes both, with treatment effects planted
and known. Their draws come from random streams of their own (``[seed, CX_STREAM, day]``), so the
store's tables and every figure computed from them are the same bytes with or without the CX
tables; one stream per order day makes the draws independent of how the days are chunked, so the
truth can be recomputed from the cell world alone (:func:`cx_truth`).

Both policies are drawn for every row with common random numbers, as in the cell world: a survey
or a new customer comes from a common order (both policies) or an extra order (treatment only);
each carries one latent draw, turned into the outcome under each policy. Two things differ by
policy, per row:

- the program's own effect (the closed loop with customers in treated families), from the
  experiment's start on (a shift before it would leak into CUPED's pre-period): ``*_SHIFT``;
- a defect active on the SKU that day (it ends earlier under the treatment policy: the world's
  fast fixes): ``*_DEFECT``.

The truth is the estimand of ``kpi_truth``: the KPI (a ratio of sums over the analysis window)
with every family under treatment minus every family under control, from the same draws.
Star rating and resolution time read the store's own feedback and tickets; their truth is known
in expectation (ratings are drawn from one distribution per review kind, resolution hours from
one distribution under both policies: a true effect of zero).
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pyarrow as pa

from insightroi.demo._rows import _ids, arrow_schema
from insightroi.demo._world import CellWorld, family_sums
from insightroi.program import Program, parse_program, starter_program_text
from insightroi.store import user_table_spec

__all__ = ["CX_TABLES", "CxDraws", "CxTruthAccumulator", "activate_cx_block", "cx_sums", "cx_tables_declared",
           "cx_truth", "empty_cx_sums"]

# A key no other stream of the world uses ([seed, 0], [seed, 1, chunk], [seed, 3]).
CX_STREAM = 22
CX_TABLES = ("surveys", "customers")

SURVEY_RATE = 0.05  # surveys answered per order
NEW_RATE = 0.12  # orders that are a customer's first
SKIP_ONE = 0.08  # share of answers leaving NPS blank, and (another) CSAT blank
NPS_MU, NPS_ROW_SD, NPS_FAM_SD, NPS_SHIFT, NPS_DEFECT = 8.0, 1.8, 0.35, 0.35, 2.5
CSAT_MU, CSAT_ROW_SD, CSAT_FAM_SD, CSAT_SHIFT, CSAT_DEFECT = 3.7, 0.9, 0.2, 0.15, 1.2
REPEAT_BASE, REPEAT_FAM_SD, REPEAT_SHIFT, REPEAT_DEFECT, REPEAT_MEAN_DAYS = 0.35, 0.25, 0.05, 0.15, 35.0
CHURN_BASE, CHURN_FAM_SD, CHURN_SHIFT, CHURN_DEFECT, CHURN_MAX_DAYS = 0.15, 0.25, 0.03, 0.12, 180.0
WITHIN_DAYS = 90  # the starter's "within 90 days" filters
# Expected star rating of a review rated <= 2 and of one rated 3-5 (demo/_rows.py: 65% ones,
# 35% twos; 50% fives, 35% fours, 15% threes).
NEG_STARS, OTHER_STARS = 1.35, 4.35

_DAY = 86_400
_US_PER_DAY = 86_400_000_000
_BLOCK = re.compile(r"(?ms)^# >>> CX KPIs\n(.*?)^# <<< CX KPIs\n")


def activate_cx_block(text: str) -> str:
    """``text`` with the ``# >>> CX KPIs`` .. ``# <<< CX KPIs`` block uncommented (unchanged if absent)."""

    def repl(m: re.Match) -> str:
        lines = [ln[2:] if ln.startswith("# ") else ln.removeprefix("#") for ln in m.group(1).splitlines()]
        return "# >>> CX KPIs\n" + "\n".join(lines) + "\n# <<< CX KPIs\n"

    return _BLOCK.sub(repl, text, count=1)


@lru_cache(maxsize=1)
def _reference() -> Program:
    return parse_program(activate_cx_block(starter_program_text()), "starter CX block")


def cx_tables_declared(program: Program) -> tuple[str, ...]:
    """The CX tables ``program`` declares exactly as the starter's block does (the ones to write)."""
    ref = {t.name: t for t in _reference().tables}
    return tuple(t.name for t in program.tables if t.name in ref and t.columns == ref[t.name].columns)


def _defect_activity(world: CellWorld) -> tuple[np.ndarray, np.ndarray]:
    """Per (SKU, day): a defect is active under the control / the treatment policy."""
    day = np.arange(world.n_days)
    act_c = np.zeros(world.nc.shape, bool)
    act_t = np.zeros(world.nc.shape, bool)
    for d in world.defects:
        act_c[d.sku] |= (day >= d.start) & (day < d.end_c)
        act_t[d.sku] |= (day >= d.start) & (day < d.end_t)
    return act_c, act_t


class CxDraws:
    """Surveys and new customers of one order day, under both policies, from the day's own stream.

    Parameters
    ----------
    world : CellWorld
        The world the rows belong to (orders per cell, defects, families, dates).
    """

    def __init__(self, world: CellWorld):
        self.w = world
        F = len(world.fam_ids)
        rng = np.random.default_rng([world.seed, CX_STREAM])
        self.fam_nps = rng.normal(0, NPS_FAM_SD, F)
        self.fam_csat = rng.normal(0, CSAT_FAM_SD, F)
        self.fam_repeat = np.exp(rng.normal(-REPEAT_FAM_SD**2 / 2, REPEAT_FAM_SD, F))
        self.fam_churn = np.exp(rng.normal(-CHURN_FAM_SD**2 / 2, CHURN_FAM_SD, F))
        self.act_c, self.act_t = _defect_activity(world)
        self.end_s = world.n_days * _DAY
        # Customer ids beyond the orders' customer pool (demo/_rows.py draws those below n_orders/3):
        # a new customer in the CRM export is never an order's customer id by accident.
        self.new_id_base = 500_000_000

    def _cells(self, rng, d: int, rate: float):
        """(sku, extra-order flag) per drawn row: common orders of day ``d``, then extra orders."""
        w = self.w
        n_c = np.zeros(len(w.sku_ids), np.int64)
        n_x = np.zeros(len(w.sku_ids), np.int64)
        m = w.nc[:, d] > 0
        n_c[m] = rng.binomial(w.nc[m, d], rate)
        m = w.nx[:, d] > 0
        n_x[m] = rng.binomial(w.nx[m, d], rate)
        k = np.concatenate([np.repeat(np.arange(len(n_c)), n_c), np.repeat(np.arange(len(n_x)), n_x)])
        extra = np.concatenate([np.zeros(n_c.sum(), bool), np.ones(n_x.sum(), bool)])
        return k, extra

    def day(self, d: int) -> dict[str, dict[str, np.ndarray]]:
        """Both policies' rows of order day ``d``: ``{"surveys": {...}, "customers": {...}}``.

        Arrays per row: ``sku``, ``extra`` (from an extra order: exists under treatment only),
        times in seconds since the world's start, and each outcome as ``<name>_t`` / ``<name>_c``.
        """
        w = self.w
        rng = np.random.default_rng([w.seed, CX_STREAM, d])
        out = {}
        # ---- surveys ------------------------------------------------------------------------
        k, extra = self._cells(rng, d, SURVEY_RATE)
        n = len(k)
        f = w.sku_fam[k]
        order_s = d * _DAY + rng.integers(0, _DAY, n)
        answered = order_s + rng.integers(_DAY // 2, 14 * _DAY, n)
        blank = rng.random(n)
        x = NPS_MU + self.fam_nps[f] + rng.normal(0, NPS_ROW_SD, n)
        y = CSAT_MU + self.fam_csat[f] + rng.normal(0, CSAT_ROW_SD, n)
        # The orders' customer pool (demo/_rows.py): a survey is answered by a buying customer.
        customer = rng.integers(0, max(1000, w.n_orders_target // 3), n)
        s = {"sku": k, "extra": extra, "answered_s": answered, "customer": customer,
             "has_nps": blank >= SKIP_ONE, "has_csat": (blank < SKIP_ONE) | (blank >= 2 * SKIP_ONE)}
        # The program runs from the experiment's start: before it, both policies are the same.
        running = float(d >= w.window_start)
        for pol, act, on in (("c", self.act_c, 0.0), ("t", self.act_t, running)):
            hit = act[k, d].astype(float)
            s[f"nps_{pol}"] = np.clip(np.round(x + on * NPS_SHIFT - hit * NPS_DEFECT), 0, 10).astype(np.int64)
            s[f"csat_{pol}"] = np.clip(np.round(y + on * CSAT_SHIFT - hit * CSAT_DEFECT), 1, 5).astype(np.int64)
        out["surveys"] = s
        # ---- new customers --------------------------------------------------------------------
        k, extra = self._cells(rng, d, NEW_RATE)
        n = len(k)
        f = w.sku_fam[k]
        first = d * _DAY + rng.integers(0, _DAY, n)
        u_rep, u_churn = rng.random(n), rng.random(n)
        rep_gap = (rng.exponential(REPEAT_MEAN_DAYS, n) * _DAY).astype(np.int64) + 3600
        churn_gap = rng.integers(_DAY, int(CHURN_MAX_DAYS * _DAY), n)
        c = {"sku": k, "extra": extra, "first_s": first}
        for pol, act, on in (("c", self.act_c, 0.0), ("t", self.act_t, running)):
            hit = act[k, d].astype(float)
            p_rep = np.clip(REPEAT_BASE * self.fam_repeat[f] + on * REPEAT_SHIFT - hit * REPEAT_DEFECT, 0, 1)
            p_churn = np.clip(CHURN_BASE * self.fam_churn[f] - on * CHURN_SHIFT + hit * CHURN_DEFECT, 0, 1)
            churn_s = np.where(u_churn < p_churn, first + churn_gap, -1)
            # A customer who churned before ordering again does not come back.
            rep_s = np.where((u_rep < p_rep) & ((churn_s < 0) | (first + rep_gap < churn_s)), first + rep_gap, -1)
            # Nothing after the data's end is in the export.
            c[f"churn_{pol}"] = np.where(churn_s < self.end_s, churn_s, -1)
            c[f"repeat_{pol}"] = np.where(rep_s < self.end_s, rep_s, -1)
        out["customers"] = c
        return out

    # ---- the rows one policy wrote, as Arrow -----------------------------------------------------
    def tables(self, d0: int, d1: int, tmask: np.ndarray, program: Program, counters: dict,
               on_day=None) -> dict[str, pa.Table]:
        """The surveys and customers of order days ``[d0, d1)`` as written under ``tmask`` (per SKU).

        ``counters`` carries the id counters from chunk to chunk; ``on_day`` is called with each
        day's both-policy rows (the truth's accumulator).
        """
        parts: dict[str, list] = {"surveys": [], "customers": []}
        for d in range(d0, d1):
            day = self.day(d)
            if on_day is not None:
                on_day(day)
            for name in parts:
                r = day[name]
                treated = tmask[r["sku"]]
                keep = ~r["extra"] | treated
                parts[name].append({key: v[keep] for key, v in r.items()} | {"treated": treated[keep]})
        out = {}
        epoch = int((np.datetime64(self.w.start, "D") - np.datetime64("1970-01-01", "D")).astype(np.int64))
        fam = np.array(self.w.fam_ids, dtype=object)

        def ts(sec):
            us = (epoch * _US_PER_DAY + sec.astype(np.int64) * 1_000_000)
            return pa.array(us, type=pa.timestamp("us", tz="UTC"), mask=sec < 0)

        def cat(rows, key):
            return np.concatenate([r[key] for r in rows]) if rows else np.zeros(0)

        declared = {t.name: t for t in program.tables}
        s = parts["surveys"]
        if "surveys" in declared:
            treated = cat(s, "treated").astype(bool)
            keep = cat(s, "answered_s") < self.end_s
            n0 = counters.get("surveys", 0)
            idx = np.arange(n0, n0 + int(keep.sum()))
            counters["surveys"] = n0 + len(idx)
            sku = cat(s, "sku").astype(np.int64)[keep]
            nps = np.where(treated, cat(s, "nps_t"), cat(s, "nps_c"))[keep]
            csat = np.where(treated, cat(s, "csat_t"), cat(s, "csat_c"))[keep]
            out["surveys"] = pa.table({
                "survey_id": _ids("S", idx),
                "customer_id": _ids("C", cat(s, "customer").astype(np.int64)[keep], 9),
                "sku_family": fam[self.w.sku_fam[sku]].tolist(),
                "answered_at": ts(cat(s, "answered_s")[keep]),
                "nps": pa.array(nps.astype(np.int64), mask=~cat(s, "has_nps").astype(bool)[keep]),
                "csat": pa.array(csat.astype(np.int64), mask=~cat(s, "has_csat").astype(bool)[keep]),
            }, schema=arrow_schema(user_table_spec(declared["surveys"]).columns))
        c = parts["customers"]
        if "customers" in declared:
            treated = cat(c, "treated").astype(bool)
            n0 = counters.get("customers", 0)
            sku = cat(c, "sku").astype(np.int64)
            idx = np.arange(n0, n0 + len(sku))
            counters["customers"] = n0 + len(idx)
            out["customers"] = pa.table({
                "customer_id": _ids("C", self.new_id_base + idx, 9),
                "sku_family": fam[self.w.sku_fam[sku]].tolist(),
                "first_order_at": ts(cat(c, "first_s")),
                "repeat_order_at": ts(np.where(treated, cat(c, "repeat_t"), cat(c, "repeat_c"))),
                "churned_at": ts(np.where(treated, cat(c, "churn_t"), cat(c, "churn_c"))),
            }, schema=arrow_schema(user_table_spec(declared["customers"]).columns))
        return out


# ---- truth ---------------------------------------------------------------------------------------

_SUMS = ("nps", "nps_count", "csat", "csat_count", "new_customers", "repeat_buyers", "churned_90d")


def empty_cx_sums(n_families: int) -> dict[str, dict[str, np.ndarray]]:
    """Zeroed per-family sums for :class:`CxTruthAccumulator`, per policy ("t", "c")."""
    return {p: {m: np.zeros(n_families) for m in _SUMS} for p in ("t", "c")}


def cx_sums(world: CellWorld, draws: CxDraws | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per-family window sums of the CX measures under each policy: ``{"t": {...}, "c": {...}}``.

    The starter block's measures: ``nps`` and ``csat`` (sums of the per-answer scores, with their
    ``_count``), ``new_customers``, ``repeat_buyers`` and ``churned_90d`` (counts), each windowed
    as the measure is (answers on ``answered_at``, customers on ``first_order_at``).
    """
    draws = draws or CxDraws(world)
    sums = empty_cx_sums(len(world.fam_ids))
    acc = CxTruthAccumulator(world, sums)
    for d in range(world.n_days):
        acc.add(draws.day(d))
    return sums


class CxTruthAccumulator:
    """Adds one day's both-policy rows to per-family sums (see :func:`cx_sums`)."""

    def __init__(self, world: CellWorld, sums: dict[str, dict[str, np.ndarray]]):
        self.w, self.sums = world, sums
        self.F = len(world.fam_ids)

    def _add(self, pol: str, name: str, fam: np.ndarray, weights: np.ndarray) -> None:
        self.sums[pol][name] += np.bincount(fam, weights=weights.astype(float), minlength=self.F)

    def add(self, day: dict[str, dict[str, np.ndarray]]) -> None:
        w = self.w
        s = day["surveys"]
        in_win = (s["answered_s"] < w.n_days * _DAY) & w.window[np.minimum(s["answered_s"] // _DAY, w.n_days - 1)]
        for pol in ("t", "c"):
            rows = in_win & (~s["extra"] if pol == "c" else True)
            fam = w.sku_fam[s["sku"][rows]]
            nps, csat = s[f"nps_{pol}"][rows], s[f"csat_{pol}"][rows]
            has_n, has_c = s["has_nps"][rows], s["has_csat"][rows]
            self._add(pol, "nps", fam, np.select([nps >= 9, nps <= 6], [1.0, -1.0], 0.0) * has_n)
            self._add(pol, "nps_count", fam, has_n)
            self._add(pol, "csat", fam, (csat >= 4) * has_c)
            self._add(pol, "csat_count", fam, has_c)
        c = day["customers"]
        in_win = w.window[c["first_s"] // _DAY]
        for pol in ("t", "c"):
            rows = in_win & (~c["extra"] if pol == "c" else True)
            fam = w.sku_fam[c["sku"][rows]]
            first = c["first_s"][rows]
            rep, churn = c[f"repeat_{pol}"][rows], c[f"churn_{pol}"][rows]
            self._add(pol, "new_customers", fam, np.ones(len(fam)))
            self._add(pol, "repeat_buyers", fam, (rep >= 0) & (rep - first <= WITHIN_DAYS * _DAY))
            self._add(pol, "churned_90d", fam, (churn >= 0) & (churn - first <= WITHIN_DAYS * _DAY))


def _ratio(num: np.ndarray, den: np.ndarray, sel: np.ndarray) -> float:
    d = float(den[sel].sum())
    return float(num[sel].sum()) / d if d > 0 else float("nan")


# KPI numerator -> (numerator sum, denominator sum) in cx_sums; the denominator the starter uses.
_FROM_SUMS = {"nps": ("nps", "nps_count", "nps_count"), "csat": ("csat", "csat_count", "csat_count"),
              "repeat_buyers": ("repeat_buyers", "new_customers", "new_customers"),
              "churned_90d": ("churned_90d", "new_customers", "new_customers")}


def cx_truth(world: CellWorld, program: Program, sums: dict | None = None) -> dict[str, dict]:
    """True effects of the program's CX KPIs, for the KPIs defined exactly as in the starter's block.

    Parameters
    ----------
    world : CellWorld
    program : Program
        A KPI gets a truth only when its measures (and, for the surveys and customers, the tables)
        are the starter block's: another definition under the same name has another truth.
    sums : dict, optional
        :func:`cx_sums` of this world, when already computed (the generator accumulates them).

    Returns
    -------
    dict
        KPI name -> ``ate``, ``ate_relative``, ``att``, ``control_value``, ``treatment_value``,
        ``avoided_events_treated`` (None: these KPIs price no events), ``planted`` (False where
        the true effect is zero by construction) and ``estimand``.
    """
    ref = _reference()
    declared = set(cx_tables_declared(program))
    F = len(world.fam_ids)
    all_, tr = np.ones(F, bool), world.fam_treated
    out: dict[str, dict] = {}
    lazy: dict = {"sums": sums}

    def same(name: str) -> bool:
        try:
            return program.measure(name) == ref.measure(name)
        except KeyError:
            return False

    for kpi in program.kpis:
        num, den = kpi.numerator, kpi.denominator
        if num in _FROM_SUMS and same(num) and den == _FROM_SUMS[num][2] and (den.endswith("_count") or same(den)):
            table = ref.measure(num).table
            if table not in declared:
                continue
            if lazy["sums"] is None:
                lazy["sums"] = cx_sums(world)
            s = lazy["sums"]
            a, b = _FROM_SUMS[num][:2]
            vt, vc = (_ratio(s[p][a], s[p][b], all_) for p in ("t", "c"))
            att = _ratio(s["t"][a], s["t"][b], tr) - _ratio(s["c"][a], s["c"][b], tr)
            out[kpi.name] = _entry(kpi.scale, vc, vt, att, True, "finite-population ATE of the ratio of sums over "
                                   "the window, both policies from the same draws (demo/_cx.py)")
        elif num == "stars" and same("stars") and den == "stars_count":
            s_t, s_c = family_sums(world, "treatment"), family_sums(world, "control")

            def stars(fs, sel):
                neg, rev = fs["negative_reviews"][sel].sum(), fs["reviews"][sel].sum()
                return float((NEG_STARS * neg + OTHER_STARS * (rev - neg)) / rev) if rev else float("nan")

            att = stars(s_t, tr) - stars(s_c, tr)
            out[kpi.name] = _entry(kpi.scale, stars(s_c, all_), stars(s_t, all_), att, True,
                                   "ATE of the mean rating given each policy's review counts: ratings are "
                                   f"drawn with mean {NEG_STARS} (rated <= 2) and {OTHER_STARS} (3-5)")
        elif (num, den) in (("resolution_hours", "resolution_hours_count"), ("median_resolution", "units")) \
                and same(num):
            out[kpi.name] = {"ate": 0.0, "ate_relative": 0.0, "att": 0.0, "avoided_events_treated": None,
                             "control_value": None, "treatment_value": None, "planted": False,
                             "estimand": "zero: ticket resolution hours are drawn from one distribution under "
                                         "both policies (demo/_rows.py)"}
    return out


def _entry(scale: float, vc: float, vt: float, att: float, planted: bool, estimand: str) -> dict:
    ate = scale * (vt - vc)
    return {"ate": ate, "ate_relative": (vt - vc) / vc if vc else None, "att": scale * att,
            "avoided_events_treated": None, "control_value": scale * vc, "treatment_value": scale * vt,
            "planted": planted, "estimand": estimand}
