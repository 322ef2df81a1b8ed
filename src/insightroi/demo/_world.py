"""The simulated company at the level of cells (SKU x day), under both policies at once.

Everything that determines a KPI is drawn here, per cell, with common random numbers: the same
sessions, the same base demand, the same defects and the same complaint draws feed both the
treatment policy (alerts -> fast fixes) and the control policy (manual process -> slow fixes).
Because a defect under the treatment policy is always fixed no later than under control, the
orders of a cell split into *common* orders (bought under both policies) and *extra* orders
(bought only under treatment, where conversion was not depressed), and every count splits into
a ``shared`` part (identical under both policies), a ``conly`` part (control only) and a
``tonly`` part (treatment only). Rows are materialised later from these counts for the policy
each family actually ran, so the truth computed here is exact for the files written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from insightroi.program import Program

__all__ = ["SCALES", "CATEGORIES", "REGIONS", "SEGMENTS", "TYPES", "simulate_cells", "CellWorld"]

# name -> (orders, families). Families >= 40 so a cluster-randomised comparison has power.
SCALES: dict[str, tuple[int, int]] = {
    "tiny": (4_000, 40),
    "small": (50_000, 64),
    "demo": (400_000, 80),
}
CATEGORIES = ("apparel", "electronics", "home", "outdoor", "beauty")
REGIONS = ("us-east", "us-west", "us-central", "canada", "uk")
REGION_P = (0.3, 0.25, 0.2, 0.1, 0.15)
SEGMENTS = ("new", "returning", "vip", "business")
SEGMENT_P = (0.35, 0.45, 0.1, 0.1)
# Event types drawn per order. negrev = review with rating <= 2, othrev = review rated 3-5.
TYPES = ("negrev", "othrev", "ticket", "chat", "refund")
ORIGINS = ("base", "base_pd", "outage", "newtheme", "defect")
TOPICS = (
    "shipping_delay", "damaged_packaging", "sizing", "product_defect", "battery_power",
    "customer_service", "price_value", "praise", "counterfeit", "off_topic",
)
PD = TOPICS.index("product_defect")

_BASE_RATE = {"negrev": 0.010, "othrev": 0.070, "ticket": 0.030, "chat": 0.015, "refund": 0.025}
# Per defect-hit order: chance of each event (a hit can produce several).
_DEFECT_Q = {"negrev": 0.45, "othrev": 0.0, "ticket": 0.40, "chat": 0.10, "refund": 0.35}
# Carrier outage: extra shipping complaints per order at the peak of the outage, everywhere.
_OUTAGE_RATE = {"negrev": 0.010, "othrev": 0.0, "ticket": 0.045, "chat": 0.025, "refund": 0.004}
_NEWTHEME_RATE = {"negrev": 0.004, "othrev": 0.0, "ticket": 0.004, "chat": 0.003, "refund": 0.004}

# Base topic mixes for complaint-type events (weights over TOPICS; praise/counterfeit unused here).
_MIX = {
    "negrev": [0.22, 0.12, 0.12, 0.12, 0.08, 0.12, 0.15, 0.0, 0.0, 0.07],
    "ticket": [0.30, 0.15, 0.08, 0.10, 0.05, 0.17, 0.05, 0.0, 0.0, 0.10],
    "chat": [0.25, 0.08, 0.10, 0.07, 0.05, 0.15, 0.10, 0.0, 0.0, 0.20],
    "refund": [0.10, 0.20, 0.30, 0.15, 0.05, 0.0, 0.15, 0.0, 0.0, 0.10],
}
# Share of rated-3-to-5 reviews that mention a (minor) product defect.
_OTHREV_PD = 0.007


def topic_mix(kind: str, category: str) -> np.ndarray:
    """Normalised base topic weights for one event type in one product category."""
    w = np.array(_MIX[kind], dtype=float)
    if category != "apparel":
        w[TOPICS.index("sizing")] *= 0.1
    if category not in ("electronics", "beauty", "home"):
        w[TOPICS.index("battery_power")] *= 0.1
    elif category != "electronics":
        w[TOPICS.index("battery_power")] *= 0.4
    return w / w.sum()


def _assign_arm(salt: str, unit: str, share: float) -> bool:
    """Salted-hash assignment (persistent holdout): stable for a unit id and salt."""
    h = hashlib.sha256(f"{salt}:{unit}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < share


@dataclass
class Defect:
    sku: int
    family: int
    topic: str
    start: int  # day index, first active day
    end_c: int  # first day fixed under the control policy (exclusive end)
    end_t: int  # first day fixed under the treatment policy
    detect: int  # day the insight model flags it (treatment policy)
    outcome: str  # "fixed" | "ignored" | "overridden" | "pre_program"
    ack_hours: float
    intensity: float
    conv_drop: float


@dataclass
class CellWorld:
    """Cell-level arrays (shape ``(n_sku, n_days)``) for both policies, plus the catalog."""

    seed: int
    n_orders_target: int
    start: date
    n_days: int
    window: np.ndarray  # bool (n_days,), the analysis window (experiment start..end, minus exclusions)
    window_start: int
    window_end: int  # inclusive day index
    fam_ids: list[str]
    fam_cat: np.ndarray
    fam_treated: np.ndarray  # bool (F,)
    sku_ids: list[str]
    sku_fam: np.ndarray
    sku_price: np.ndarray
    sku_cost: np.ndarray
    sku_launch: np.ndarray  # day index (may be negative: launched before the world starts)
    sku_defect_topic: np.ndarray  # int topic index of the SKU's defect, -1 if none
    sessions: np.ndarray
    nc: np.ndarray  # common orders
    nx: np.ndarray  # extra orders, treatment policy only
    q2c: np.ndarray  # how many common orders have quantity 2, 3
    q3c: np.ndarray
    q2x: np.ndarray
    q3x: np.ndarray
    price_eff: np.ndarray  # price after promotion discount
    counts: dict  # (type, origin) -> {"shared": arr, "conly": arr | None, "tonly": arr | None}
    defects: list[Defect]
    promotions: list[dict]
    stockout: dict
    outage: dict
    new_theme: dict
    newtheme_fams: np.ndarray
    extra: dict = field(default_factory=dict)

    @property
    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.n_days)]

    def sku_treated(self) -> np.ndarray:
        return self.fam_treated[self.sku_fam]

    def policy_mask(self, policy: str) -> np.ndarray:
        """Per-SKU bool: does this SKU run the treatment policy? policy in treatment|control|observed."""
        if policy == "treatment":
            return np.ones(len(self.sku_ids), bool)
        if policy == "control":
            return np.zeros(len(self.sku_ids), bool)
        return self.sku_treated()

    def orders(self, tmask: np.ndarray) -> np.ndarray:
        return self.nc + self.nx * tmask[:, None]

    def units(self, tmask: np.ndarray) -> np.ndarray:
        uc = self.nc + self.q2c + 2 * self.q3c
        ux = self.nx + self.q2x + 2 * self.q3x
        return uc + ux * tmask[:, None]

    def count(self, kind: str, origin: str, tmask: np.ndarray) -> np.ndarray:
        parts = self.counts[(kind, origin)]
        out = parts["shared"].copy()
        if parts["tonly"] is not None:
            out += parts["tonly"] * tmask[:, None]
        if parts["conly"] is not None:
            out += parts["conly"] * (~tmask)[:, None]
        return out


def _binom(rng, n: np.ndarray, p) -> np.ndarray:
    """Binomial draws only where n > 0 (most cells are empty at small scales: 3x faster)."""
    out = np.zeros(n.shape, dtype=np.int64)
    m = n > 0
    if m.any():
        pp = np.broadcast_to(p, n.shape)[m] if np.ndim(p) else p
        out[m] = rng.binomial(n[m], pp)
    return out


def _lognormal(rng, sigma, size):
    return np.exp(rng.normal(-sigma**2 / 2, sigma, size))


def _season(dates: list[date]) -> np.ndarray:
    dow = np.array([d.weekday() for d in dates])
    weekly = np.array([0.95, 0.92, 0.93, 0.97, 1.05, 1.12, 1.06])[dow]
    doy = np.array([d.timetuple().tm_yday for d in dates])
    yearly = 1 + 0.15 * np.sin(2 * np.pi * (doy - 80) / 365.25)
    ordinal = np.array([d.toordinal() for d in dates])
    holiday = np.ones(len(dates))
    for y in range(dates[0].year, dates[-1].year + 1):
        peak = date(y, 12, 5).toordinal()
        holiday += 0.9 * np.clip(1 - np.abs(ordinal - peak) / 22, 0, None)
    return weekly * yearly * holiday


def simulate_cells(seed: int, n_orders: int, n_families: int, program: Program) -> CellWorld:
    """Draw the whole world at SKU x day level under both policies (common random numbers).

    Parameters
    ----------
    seed : int
    n_orders : int
        Expected number of orders (before defects depress conversion).
    n_families : int
        Number of SKU families (the randomisation units).
    program : Program
        The program the world is generated for: experiment dates, salt, treatment share.
    """
    rng = np.random.default_rng([seed, 0])
    exp = program.experiment
    w_start = exp.start
    w_end = exp.end if exp.end is not None else exp.start + timedelta(days=273)
    start = w_start - timedelta(days=181)
    n_days = (w_end - start).days + 1
    dates = [start + timedelta(days=i) for i in range(n_days)]
    ws, we = (w_start - start).days, (w_end - start).days
    window = np.zeros(n_days, bool)
    window[ws : we + 1] = True
    for lo, hi in exp.exclude_windows:
        a, b = max((lo - start).days, 0), min((hi - start).days, n_days - 1)
        if a <= b:
            window[a : b + 1] = False

    # ---- catalog ------------------------------------------------------------------------
    F = n_families
    fam_cat = rng.permutation(np.arange(F) % len(CATEGORIES))
    fam_ids = []
    for f in range(F):
        # Names vary by seed, so the salted-hash assignment varies by seed too.
        fam_ids.append(f"{CATEGORIES[fam_cat[f]][:3].upper()}-{int(rng.integers(16**5)):05x}-{f:03d}")
    fam_treated = np.array([_assign_arm(exp.salt, u, exp.treatment_share) for u in fam_ids])
    n_sku_f = np.minimum(2 + rng.poisson(1.5, F), 6)
    sku_fam = np.repeat(np.arange(F), n_sku_f)
    K = len(sku_fam)
    sku_ids = []
    counter = np.zeros(F, int)
    for f in sku_fam:
        sku_ids.append(f"{fam_ids[f]}-{counter[f] + 1:02d}")
        counter[f] += 1
    price_lo = np.array([20, 30, 25, 20, 10.0])[fam_cat[sku_fam]]
    price_hi = np.array([120, 300, 200, 250, 80.0])[fam_cat[sku_fam]]
    sku_price = np.round(np.exp(rng.uniform(np.log(price_lo), np.log(price_hi))), 2) - 0.01
    sku_cost = np.round(sku_price * rng.uniform(0.4, 0.7, K), 2)
    sku_launch = -rng.integers(30, 900, K)
    late = rng.random(K) < 0.08
    sku_launch[late] = rng.integers(0, 120, late.sum())
    pop = _lognormal(rng, 0.35, F)[sku_fam] * _lognormal(rng, 0.4, K)
    conv = rng.uniform(0.02, 0.05, K)

    # ---- calendar: season, promotions, stockout -------------------------------------------
    season = _season(dates)
    cat_of_sku = fam_cat[sku_fam]
    sess_lift = np.ones((K, n_days))
    conv_lift = np.ones((K, n_days))
    disc = np.zeros((K, n_days))
    promotions = []
    n_promo = 8
    for i in range(n_promo):
        if i == 0:  # the holiday-season sale, everything
            bf = next((d for d in range(n_days) if dates[d].month == 11 and dates[d].day >= 24 and dates[d].weekday() == 4), None)
            if bf is None:
                continue
            a, length, cat = bf, 4, None
        else:
            length = int(rng.integers(3, 8))
            a = int(rng.integers(0, n_days - length))
            cat = int(rng.integers(len(CATEGORIES)))
        d_pct = float(rng.choice([0.1, 0.15, 0.2, 0.25]))
        rows = np.ones(K, bool) if cat is None else cat_of_sku == cat
        sess_lift[np.ix_(rows, np.arange(a, a + length))] *= 1.3
        conv_lift[np.ix_(rows, np.arange(a, a + length))] *= 1.15
        disc[np.ix_(rows, np.arange(a, a + length))] = d_pct
        promotions.append({"start": a, "end": a + length, "scope": "all" if cat is None else f"category:{CATEGORIES[cat]}",
                           "discount": d_pct})
    stock_fam = int(rng.integers(F))
    so_len = int(rng.integers(8, 15))
    so_start = int(rng.integers(ws, we - so_len))
    avail = np.ones((K, n_days))
    avail[np.ix_(sku_fam == stock_fam, np.arange(so_start, so_start + so_len))] = 0.0
    stockout = {"family": stock_fam, "start": so_start, "end": so_start + so_len}
    launched = np.arange(n_days)[None, :] >= sku_launch[:, None]

    # ---- demand: sessions and conversion ---------------------------------------------------
    expected = pop[:, None] * season[None, :] * sess_lift * conv_lift * avail * launched
    c = n_orders / expected.sum()
    lam_sessions = c * pop[:, None] * season[None, :] * sess_lift * launched / conv[:, None]
    p_conv = np.clip(conv[:, None] * conv_lift * avail, 0, 1)
    sessions = rng.poisson(lam_sessions)

    # ---- defects ------------------------------------------------------------------------------
    defects: list[Defect] = []
    sku_defect_topic = np.full(K, -1)
    n_def = rng.poisson(1.2, F)
    for f in range(F):
        skus = np.flatnonzero(sku_fam == f)
        for s in rng.permutation(skus)[: n_def[f]]:
            topic = "battery_power" if (fam_cat[f] == 1 and rng.random() < 0.4) else "product_defect"
            st = int(rng.integers(20, n_days - 10))
            end_c = st + int(rng.integers(30, 91))
            detect = st + int(rng.integers(2, 7))
            ack_h = float(np.exp(rng.normal(np.log(10), 0.6)))
            u = rng.random()
            fix_days = int(rng.integers(2, 9))
            if detect < ws:
                outcome, end_t = "pre_program", end_c
            elif u < 0.12:
                outcome, end_t = "ignored", end_c
            elif u < 0.20:
                outcome, end_t = "overridden", end_c
            else:
                outcome = "fixed"
                end_t = min(end_c, detect + int(np.ceil(ack_h / 24)) + fix_days)
            defects.append(Defect(int(s), f, topic, st, end_c, end_t, detect, outcome, ack_h,
                                  float(rng.uniform(0.10, 0.25)), float(rng.uniform(0.1, 0.3))))
            sku_defect_topic[s] = TOPICS.index(topic)
    day = np.arange(n_days)[None, :]
    act_c = np.zeros((K, n_days), bool)
    act_t = np.zeros((K, n_days), bool)
    d_int = np.zeros((K, n_days))
    d_drop = np.zeros((K, n_days))
    for d in defects:
        ac = (day[0] >= d.start) & (day[0] < d.end_c)
        act_c[d.sku] |= ac
        act_t[d.sku] |= (day[0] >= d.start) & (day[0] < d.end_t)
        d_int[d.sku, ac] = d.intensity
        d_drop[d.sku, ac] = d.conv_drop

    # ---- orders under both policies (coupled binomials) -----------------------------------------
    m_c = 1 - d_drop * act_c
    m_t = 1 - d_drop * act_t
    pc = p_conv * m_c
    pt = p_conv * m_t
    nc = _binom(rng, sessions, pc)
    px = np.where(pt > pc, (pt - pc) / np.maximum(1 - pc, 1e-12), 0.0)
    nx = _binom(rng, sessions - nc, np.clip(px, 0, 1))
    q2c = _binom(rng, nc, 0.15)
    q3c = _binom(rng, nc - q2c, 0.04)
    q2x = _binom(rng, nx, 0.15)
    q3x = _binom(rng, nx - q2x, 0.04)

    # ---- events ----------------------------------------------------------------------------------
    fam_q = _lognormal(rng, 0.3, F)
    cat_names = [CATEGORIES[i] for i in range(len(CATEGORIES))]
    pd_share = {k: np.array([topic_mix(k, c)[PD] for c in cat_names]) for k in _MIX}
    pd_share["othrev"] = np.full(len(CATEGORIES), _OTHREV_PD)
    # Carrier outage inside the window: a ramped bump of shipping complaints for every SKU.
    o_len = int(rng.integers(4, 8))
    o_start = int(rng.integers(ws + 20, we - 40))
    ramp = np.zeros(n_days)
    ramp[o_start : o_start + o_len] = 1.0
    ramp[o_start + o_len : o_start + o_len + 4] = [0.6, 0.35, 0.2, 0.1][: max(0, min(4, n_days - o_start - o_len))]
    outage = {"start": o_start, "end": o_start + o_len}
    # New theme: counterfeit listings in ~30% of families, ramping up in the last months.
    nt_start = we - int(rng.integers(60, 91))
    nt_ramp = np.clip((np.arange(n_days) - nt_start) / 30.0, 0, 1)
    newtheme_fams = rng.random(F) < 0.3
    nt_sku = newtheme_fams[sku_fam].astype(float)
    new_theme = {"start": nt_start, "families": [fam_ids[i] for i in np.flatnonzero(newtheme_fams)]}

    counts: dict = {}
    for k in TYPES:
        noise = _lognormal(rng, 0.2, F)
        rate = _BASE_RATE[k] * fam_q[sku_fam] * noise[sku_fam]
        if k == "refund":
            rate = rate * np.where(cat_of_sku == 0, 2.0, 1.0)
        if k == "ticket":
            rate = rate * np.where(cat_of_sku == 1, 1.3, 1.0)
        rate = np.broadcast_to(rate[:, None], (K, n_days))
        b_sh = _binom(rng, nc, rate)
        b_to = _binom(rng, nx, rate)
        share = pd_share[k][cat_of_sku][:, None]
        pd_sh = _binom(rng, b_sh, share)
        pd_to = _binom(rng, b_to, share)
        counts[(k, "base")] = {"shared": b_sh - pd_sh, "tonly": b_to - pd_to, "conly": None}
        counts[(k, "base_pd")] = {"shared": pd_sh, "tonly": pd_to, "conly": None}
        r_out = np.broadcast_to(_OUTAGE_RATE[k] * ramp[None, :], (K, n_days))
        counts[(k, "outage")] = {"shared": _binom(rng, nc, r_out), "tonly": _binom(rng, nx, r_out), "conly": None}
        r_nt = _NEWTHEME_RATE[k] * nt_sku[:, None] * nt_ramp[None, :]
        counts[(k, "newtheme")] = {"shared": _binom(rng, nc, r_nt), "tonly": _binom(rng, nx, r_nt), "conly": None}
    hits = _binom(rng, nc, d_int * act_c)
    for k in TYPES:
        e = _binom(rng, hits, _DEFECT_Q[k])
        counts[(k, "defect")] = {"shared": np.where(act_t, e, 0), "conly": np.where(act_t, 0, e), "tonly": None}

    price_eff = np.round(sku_price[:, None] * (1 - disc), 2)
    return CellWorld(
        seed=seed, n_orders_target=n_orders, start=start, n_days=n_days, window=window,
        window_start=ws, window_end=we, fam_ids=fam_ids, fam_cat=fam_cat, fam_treated=fam_treated,
        sku_ids=sku_ids, sku_fam=sku_fam, sku_price=sku_price, sku_cost=sku_cost, sku_launch=sku_launch,
        sku_defect_topic=sku_defect_topic, sessions=sessions, nc=nc, nx=nx, q2c=q2c, q3c=q3c, q2x=q2x,
        q3x=q3x, price_eff=price_eff, counts=counts, defects=defects, promotions=promotions,
        stockout=stockout, outage=outage, new_theme=new_theme, newtheme_fams=newtheme_fams,
        extra={"ramp": ramp, "nt_ramp": nt_ramp},
    )


# ---- measures and truth -------------------------------------------------------------------------

SUPPORTED_MEASURES = (
    "orders", "revenue", "margin", "feedback", "reviews", "negative_reviews", "defect_mentions",
    "tickets", "refunds", "refund_amount", "sessions", "conversions", "units",
)


def _measure_parts(world: CellWorld) -> dict[str, dict[str, np.ndarray]]:
    """Window sums per SKU of every measure, split into shared / conly / tonly parts (cached).

    Every measure is linear in the cell counts, so a policy's per-SKU total is
    ``shared + tonly`` (treatment) or ``shared + conly`` (control).
    """
    cached = world.extra.get("_parts")
    if cached is not None:
        return cached
    win = world.window[None, :]
    K = len(world.sku_ids)
    zero = np.zeros(K)

    def wsum(arr):
        return zero if arr is None else (arr * win).sum(axis=1).astype(float)

    def part(shared=None, conly=None, tonly=None):
        return {"shared": wsum(shared), "conly": wsum(conly), "tonly": wsum(tonly)}

    def add(*ps):
        return {k: sum(p[k] for p in ps) for k in ("shared", "conly", "tonly")}

    pe = world.price_eff
    uc = world.nc + world.q2c + 2 * world.q3c
    ux = world.nx + world.q2x + 2 * world.q3x
    margin_unit = pe - world.sku_cost[:, None]
    parts = {
        "orders": part(world.nc, None, world.nx),
        "revenue": part(pe * uc, None, pe * ux),
        "margin": part(margin_unit * uc, None, margin_unit * ux),
        "sessions": part(world.sessions),
    }
    parts["conversions"] = parts["orders"]
    by = {key: part(c["shared"], c["conly"], c["tonly"]) for key, c in world.counts.items()}
    per_type = {k: add(*(by[(k, o)] for o in ORIGINS)) for k in TYPES}
    parts["negative_reviews"] = per_type["negrev"]
    parts["reviews"] = add(per_type["negrev"], per_type["othrev"])
    parts["tickets"] = per_type["ticket"]
    parts["refunds"] = per_type["refund"]
    parts["refund_amount"] = add(*(
        part(*(None if world.counts[("refund", o)][x] is None else pe * world.counts[("refund", o)][x]
               for x in ("shared", "conly", "tonly")))
        for o in ORIGINS))
    parts["feedback"] = add(*per_type.values())
    is_pd = (world.sku_defect_topic == PD).astype(float)
    dm = add(*(by[(k, "base_pd")] for k in TYPES))
    dd = add(*(by[(k, "defect")] for k in TYPES))
    parts["defect_mentions"] = {x: dm[x] + dd[x] * is_pd for x in dm}
    world.extra["_parts"] = parts
    return parts


def family_sums(world: CellWorld, policy: str) -> dict[str, np.ndarray]:
    """Per-family sums of every measure over the analysis window under ``policy``.

    ``policy`` is "treatment" (every family runs the program), "control" (none does) or
    "observed" (each family runs its assigned arm, which is what the files hold).
    """
    tmask = world.policy_mask(policy).astype(float)
    F = len(world.fam_ids)
    out = {}
    for name, p in _measure_parts(world).items():
        per_sku = p["shared"] + tmask * p["tonly"] + (1 - tmask) * p["conly"]
        out[name] = np.bincount(world.sku_fam, weights=per_sku, minlength=F)
    out["units"] = np.ones(F)
    return out
