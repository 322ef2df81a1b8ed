"""Rendering a report bundle to one self-contained HTML page per audience.

The input is the JSON form of :class:`insightroi.bundle.Bundle` (``Bundle.to_report()``): the
stages' saved sections joined by :func:`insightroi.bundle.assemble_bundle`. Every figure on the
page is one of those saved objects; nothing here re-derives an effect, a verdict or an owner.
"""

from __future__ import annotations

import calendar
import json
import math
from datetime import date, datetime, timedelta
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal

import jinja2

from insightroi.bundle import DEFAULT_AUDIENCES, STAGES
from insightroi.errors import check_option
from insightroi.report import _charts
from insightroi.report._pdf import export_pdf

__all__ = [
    "render_html", "write_report", "cadence_period", "VIEWS", "CADENCES", "format_helpers",
    "bundle_alpha", "kpi_verdict", "kpi_verdict_title", "primary_kpi_row", "forest_rows", "CADENCE_UNITS",
    "CADENCE_ALIASES", "cadence_rows",
]

View = Literal["full", "executive", "finance", "support", "product"]
Cadence = Literal["weekly", "monthly", "quarterly", "week", "month", "quarter"]
VIEWS: tuple[str, ...] = ("full", "executive", "finance", "support", "product")
CADENCES: tuple[str, ...] = ("weekly", "monthly", "quarterly")
# The period units of a cadence series (insightroi.report._cadence); each old preset names one.
CADENCE_UNITS: tuple[str, ...] = ("week", "month", "quarter")
CADENCE_ALIASES: dict[str, str] = {"weekly": "week", "monthly": "month", "quarterly": "quarter"}
_PRESET_OF = {u: p for p, u in CADENCE_ALIASES.items()}

_TEMPLATES = Path(__file__).parent / "templates"
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}

# Which sections each audience sees (order is page order). "full" shows everything present.
_SECTIONS: dict[str, tuple[str, ...]] = {
    "full": ("summary", "erasure", "failures", "tree", "experiment", "effects", "arms", "segments", "decision_rules", "cadence", "roi", "assumptions", "chain",
             "insights", "monitor", "quasi", "claims"),
    "executive": ("summary", "erasure", "failures", "effects_brief", "decision_rules", "roi_brief", "chain_brief",
                  "monitor_brief", "claims"),
    "finance": ("erasure", "finance_numbers", "finance_kpis", "finance_trend", "cadence", "roi", "assumptions"),
    "support": ("erasure", "support_numbers", "support_resolution", "support_pain", "support_alerts"),
    "product": ("erasure", "product_themes", "product_evidence", "product_fixes", "effects_product"),
}
_TITLES = {
    "full": "Full report", "executive": "Executive summary", "finance": "Finance view",
    "support": "Support / CS view", "product": "Product view",
}


# ---------------------------------------------------------------------------------------------
# formatting
def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def format_helpers(currency: str = "USD") -> dict[str, Any]:
    """The number formatters the templates use (also used by the dashboard)."""
    sym = _SYMBOLS.get(currency, currency + " ")

    def money(x: Any, signed: bool = False) -> str:
        if not _finite(x):
            return "–"
        sign = "−" if x < 0 else ("+" if signed and x > 0 else "")
        return f"{sign}{sym}{abs(x):,.0f}"

    def pct(x: Any, signed: bool = True, nd: int = 1) -> str:
        if not _finite(x):
            return "–"
        s = f"{abs(x) * 100:,.{nd}f}%"
        return ("−" if x < 0 else ("+" if signed and x > 0 else "")) + s

    def num(x: Any, signed: bool = False) -> str:
        if not _finite(x):
            return "–"
        if isinstance(x, int):
            return ("+" if signed and x > 0 else "") + f"{x:,}".replace("-", "−")
        a = abs(x)
        body = f"{a:,.0f}" if a >= 1000 else f"{a:,.1f}" if a >= 100 else f"{a:.2f}" if a >= 1 else f"{a:.4g}"
        return ("−" if x < 0 else ("+" if signed and x > 0 else "")) + body

    def pval(x: Any) -> str:
        if not _finite(x):
            return "–"
        return "< 0.001" if x < 0.001 else f"{x:.3f}"

    def count(x: Any) -> str:
        return f"{x:,.0f}" if _finite(x) else "–"

    def label(x: Any) -> str:
        # A missing name (the "other" theme has no owner) is a dash like a missing number.
        return "–" if x is None else str(x).replace("_", " ")

    return {"money": money, "pct": pct, "num": num, "pval": pval, "count": count, "label": label}


# ---------------------------------------------------------------------------------------------
# cadence
def decay_title(monitor: dict) -> str:
    """Title of the lift-decay chart: the KPI its rows are about, in that KPI's units.

    Parameters
    ----------
    monitor : dict
        The bundle's "monitor" section; ``decay_kpi`` names the KPI (bundles written before it
        was saved say "the decision KPI", the KPI the monitor values).

    Returns
    -------
    str
    """
    kpi = monitor.get("decay_kpi")
    name = str(kpi).replace("_", " ") if kpi else "the decision KPI"
    return f"Effect on {name} by period, treatment - control in the KPI's units (lift decay)"


def _as_date(x: Any) -> date | None:
    if x is None:
        return None
    if isinstance(x, datetime):
        return x.date()
    if isinstance(x, date):
        return x
    try:
        return date.fromisoformat(str(x)[:10])
    except ValueError:
        return None


def cadence_period(window: dict | None, cadence: str | None) -> dict[str, Any]:
    """The reporting period ending at the window's end, for a cadence preset.

    Returns a dict with ``label``, ``start``, ``end`` (ISO dates) and ``cadence``. Without a
    cadence the period is the whole window.
    """
    if cadence is not None:
        check_option("cadence", cadence, CADENCES + CADENCE_UNITS)
        cadence = _PRESET_OF.get(cadence, cadence)
    start, end = _as_date((window or {}).get("start")), _as_date((window or {}).get("end"))
    if end is None:
        return {"label": "no window", "start": None, "end": None, "cadence": cadence}
    if cadence is None:
        s = start or end
        return {"label": f"{s:%d %b %Y} – {end:%d %b %Y}", "start": s.isoformat(), "end": end.isoformat(),
                "cadence": None}
    if cadence == "weekly":
        # The seven days ending at the window's end (a week that ends mid-week is still a week).
        ps, pe = end - timedelta(days=6), end
        label = f"Week ending {pe:%d %b %Y} ({ps:%d %b} – {pe:%d %b})"
    elif cadence == "monthly":
        ps = end.replace(day=1)
        pe = end.replace(day=calendar.monthrange(end.year, end.month)[1])
        label = f"{end:%B %Y}"
    else:
        q = (end.month - 1) // 3
        ps = date(end.year, 3 * q + 1, 1)
        last_month = 3 * q + 3
        pe = date(end.year, last_month, calendar.monthrange(end.year, last_month)[1])
        label = f"Q{q + 1} {end.year} ({ps:%d %b} – {pe:%d %b %Y})"
    return {"label": label, "start": ps.isoformat(), "end": pe.isoformat(), "cadence": cadence}


_UNIT_PLURAL = {"week": "weeks", "month": "months", "quarter": "quarters"}


def cadence_rows(bundle: dict) -> dict[str, Any] | None:
    """The bundle's cadence series (``run_cadence``'s saved payload), or None when it has none.

    Parameters
    ----------
    bundle : dict
        A report bundle; the series is under ``"cadence"``.

    Returns
    -------
    dict or None
        The series with ``periods`` kept to the rows that are dicts, and ``span_label`` added
        (e.g. ``"Jul 2025 – Mar 2026 by quarter (3 quarters)"``).
    """
    series = bundle.get("cadence") if isinstance(bundle, dict) else None
    if not isinstance(series, dict) or series.get("cadence") not in CADENCE_UNITS:
        return None
    periods = [p for p in series.get("periods") or [] if isinstance(p, dict)]
    if not periods:
        return None
    unit = series["cadence"]
    first, last = _as_date(periods[0].get("covered_start")), _as_date(periods[-1].get("covered_end"))
    span = f"{first:%d %b %Y} – {last:%d %b %Y}" if first and last else "the experiment window"
    n = len(periods)
    return {**series, "periods": periods,
            "span_label": f"{span} by {unit} ({n} {unit if n == 1 else _UNIT_PLURAL[unit]})"}


# ---------------------------------------------------------------------------------------------
# sanitising the HTML summaries that results carry (they come from the store: trust nothing)
class _Sanitizer(HTMLParser):
    _ALLOWED = {"table", "thead", "tbody", "tr", "th", "td", "ol", "ul", "li", "p", "b", "i", "em",
                "strong", "code", "span", "br", "sup", "sub"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in self._ALLOWED:
            cls = next((v for k, v in attrs if k == "class" and v), None)
            self.out.append(f'<{tag} class="{escape(cls)}">' if cls else f"<{tag}>")

    def handle_endtag(self, tag):
        if tag in self._ALLOWED and tag != "br":
            self.out.append(f"</{tag}>")

    def handle_data(self, data):
        self.out.append(escape(data))


def _sanitize(fragment: Any) -> str:
    if not fragment:
        return ""
    p = _Sanitizer()
    p.feed(str(fragment))
    p.close()
    return "".join(p.out)


# ---------------------------------------------------------------------------------------------
# derived content
def bundle_alpha(bundle: dict) -> float:
    """The significance level the experiment stage used (program's ``alpha`` when not saved)."""
    for src in (bundle.get("experiment") or {}, bundle.get("program") or {}):
        a = src.get("alpha")
        if _finite(a) and 0 < a < 1:
            return float(a)
    return 0.05


def _significant_adjusted(k: dict, alpha: float = 0.05) -> bool | None:
    """The saved multiplicity-adjusted (Holm) significance; from ``p_adjusted`` for older bundles."""
    sig = k.get("significant_adjusted")
    if isinstance(sig, bool):
        return sig
    # Schema-1 bundles carry the Holm p-value but not the flag the analyze stage now saves.
    p_adj = k.get("p_adjusted")
    return bool(p_adj < alpha) if _finite(p_adj) else None


def kpi_verdict(k: dict, alpha: float = 0.05) -> bool | None:
    """Whether a KPI improved (True), worsened (False) or neither is shown (None).

    Uses the multiplicity-adjusted result: a KPI is "improved" only when its Holm-adjusted test
    is significant and the estimate points the way the KPI's ``direction`` wants. An interval
    that excludes zero before adjustment is not enough: with several KPIs, one of them would
    often do so by chance.
    """
    if not isinstance(k, dict) or _significant_adjusted(k, alpha) is not True:
        return None
    est = next((k[key] for key in ("estimate", "relative") if _finite(k.get(key))), None)
    direction = k.get("direction")
    if est is None or est == 0 or direction not in ("increase", "decrease"):
        return None
    return (est < 0) == (direction == "decrease")


def kpi_verdict_title(k: dict, alpha: float = 0.05, pval: Any = None) -> str:
    """The badge's tooltip: which test the verdict rests on."""
    fmt = pval or (lambda x: f"{x:.3g}")
    sig = _significant_adjusted(k, alpha) if isinstance(k, dict) else None
    p_adj = k.get("p_adjusted") if isinstance(k, dict) else None
    if sig is None:
        return "no multiplicity-adjusted (Holm) result for this KPI"
    shown = f"p = {fmt(p_adj)}" if _finite(p_adj) else "p"
    if sig:
        return f"adjusted (Holm): {shown} < alpha {alpha:g}"
    return f"adjusted (Holm): {shown}, not below alpha {alpha:g}; not counted as a change"


def _has_result(k: dict | None) -> bool:
    return isinstance(k, dict) and any(_finite(k.get(x)) for x in ("estimate", "relative"))


def primary_kpi_row(bundle: dict) -> tuple[str | None, dict | None]:
    """The program's primary KPI: ``(name, its saved row)``; the row is None when it has no result.

    Never another KPI in its place: the headline is the KPI the program committed to before
    seeing the data, not the one that happened to come out best.
    """
    name = (bundle.get("program") or {}).get("primary_kpi")
    if not name:
        return None, None
    row = next((k for k in bundle.get("kpis") or [] if isinstance(k, dict) and k.get("name") == name), None)
    return name, (row if _has_result(row) else None)


def _decision(bundle: dict, primary: dict | None) -> tuple[str, str, str]:
    """(status, headline, reason) of the decision the evidence supports."""
    roi = bundle.get("roi") or {}
    p = roi.get("p_positive")
    good = kpi_verdict(primary, bundle_alpha(bundle)) if primary else None
    if not _finite(p):
        if good:
            return "pass", "Keep the program running", "The primary KPI moved the right way; no ROI estimate yet."
        return "warn", "Keep measuring", "Not enough evidence yet for an ROI decision."
    cons = roi.get("conservative")
    if p >= 0.9 and good is not False:
        reason = f"ROI is positive with probability {p:.0%}"
        if _finite(cons):
            reason += f" and stays {'positive' if cons > 0 else 'near break-even'} at the conservative 10th percentile"
        return "pass", "Continue and scale the program", reason + "."
    if p >= 0.6:
        return "warn", "Continue, but collect more evidence before scaling", f"ROI is positive with probability {p:.0%} only."
    return "fail", "Stop or redesign the program", f"ROI is positive with probability {p:.0%}."


def forest_rows(kpis: list[dict], is_demo: bool, relative: bool = True, alpha: float = 0.05) -> list[dict]:
    """The forest chart's rows (label, estimate, interval, truth on the demo, verdict) for KPIs with a result."""
    keys = ("relative", "relative_ci_low", "relative_ci_high", "truth_relative") if relative else \
        ("estimate", "ci_low", "ci_high", "truth")
    rows = []
    for k in kpis:
        if not _finite(k.get(keys[0])):
            continue
        rows.append({
            "label": str(k.get("name", "?")).replace("_", " "),
            "estimate": k[keys[0]], "ci_low": k.get(keys[1]), "ci_high": k.get(keys[2]),
            "truth": k.get(keys[3]) if is_demo else None, "good": kpi_verdict(k, alpha),
        })
    return rows


def _tree(bundle: dict) -> list[dict]:
    """Columns of the metric tree: model KPI -> workflow KPI -> business KPI -> value pools -> ROI."""
    kpis = bundle.get("kpis") or []
    roi = bundle.get("roi") or {}
    cols = []
    for layer, title in (("model", "Model KPIs"), ("workflow", "Workflow KPIs"), ("business", "Business KPIs")):
        items = [k for k in kpis if k.get("layer") == layer]
        cols.append({"title": title, "kind": "kpi", "items": items})
    cols.append({"title": "Value pools", "kind": "pool", "items": roi.get("pools") or []})
    cols.append({"title": "ROI", "kind": "roi", "items": [roi] if roi else []})
    return [c for c in cols if c["items"]]


def _audiences(program: dict) -> tuple[dict[str, set[str]], bool]:
    """Owners per audience view from the program section, and whether they are the defaults.

    A schema-1 bundle has no ``audiences``; it then gets the defaults the bundle module gives a
    program file that names none, so an old store still renders its views (and says so).
    """
    aud = program.get("audiences")
    if isinstance(aud, dict) and aud:
        return {v: {str(o) for o in (owners or [])} for v, owners in aud.items()}, False

    return {v: set(owners) for v, owners in DEFAULT_AUDIENCES.items()}, True


def _kpi_owner(k: dict, program: dict) -> str | None:
    return k.get("owner") or (program.get("kpi_owners") or {}).get(k.get("name"))


def _topic_owner(t: dict, program: dict) -> str | None:
    return t.get("owner") or (program.get("topic_owners") or {}).get(t.get("topic"))


_CLAIM_SOURCES = {
    "naive": "Before/after of the treated group, no control: what a dashboard would report",
    "true": "The true effect the demo world simulated (known only in the demo)",
    "saved": "Checked with insightroi validate-claim",
}


def _claim_rows(claims: Any) -> list[dict[str, Any]]:
    """Claims as the table shows them: the quasi stage's and those saved by ``validate-claim``.

    A saved claim keeps the validator's own shape (``claim`` is the parsed claim, a dict with its
    ``text``; the verdict ``"not supported"`` has a space), so it is normalised here.
    """
    rows = []
    for c in claims or []:
        if not isinstance(c, dict):
            continue
        text = c.get("claim")
        if isinstance(text, dict):
            text = text.get("text")
        verdict = c.get("verdict")
        ci = c.get("incremental_relative_ci")
        reasons = c.get("reasons")
        rows.append({
            "claim": text or "–", "kpi": c.get("kpi"), "label": c.get("label"),
            "source": _CLAIM_SOURCES.get(c.get("label"), c.get("label") or "–"),
            "verdict": str(verdict).replace("_", " ") if verdict else "–",
            "verdict_class": str(verdict or "skip").replace(" ", "_"),
            "incremental_relative": c.get("incremental_relative"),
            "ci": ci if isinstance(ci, (list, tuple)) and len(ci) == 2 else None,
            "reasons": " ".join(str(r) for r in reasons) if isinstance(reasons, (list, tuple)) else (reasons or ""),
        })
    return rows


def _quasi_rows(quasi: Any) -> list[dict[str, Any]]:
    if isinstance(quasi, dict):  # a hand-edited schema-1 file may nest the rows
        quasi = quasi.get("rows")
    return [q for q in quasi or [] if isinstance(q, dict)]


def _provenance_rows(bundle: dict) -> list[dict[str, Any]]:
    """One line per stage (flow order) of what its saved section was computed from."""
    prov = bundle.get("provenance") or {}
    if not isinstance(prov, dict):
        return []

    order = {s: i for i, s in enumerate(STAGES)}
    rows = []
    for stage in sorted(prov, key=lambda s: (order.get(s, len(order)), s)):
        p = prov[stage] if isinstance(prov[stage], dict) else {}
        models = p.get("model_versions") or {}
        rows.append({
            "stage": stage, "created_at": str(p.get("created_at") or "–")[:19].replace("T", " "),
            "program_hash": p.get("program_hash") or "–", "package_version": p.get("package_version") or "–",
            "models": ", ".join(f"{k} {v}" for k, v in models.items()) if isinstance(models, dict) else str(models),
        })
    return rows


def _context(bundle: dict, view: str, cadence: str | None) -> dict[str, Any]:
    program = bundle.get("program") or {}
    fmt = format_helpers(program.get("currency", "USD"))
    is_demo = bool(bundle.get("is_demo"))
    alpha = bundle_alpha(bundle)
    kpis = [k for k in bundle.get("kpis") or [] if isinstance(k, dict)]
    roi = bundle.get("roi") or {}
    chain = bundle.get("chain") or {}
    insights = bundle.get("insights") or {}
    monitor = bundle.get("monitor") or {}
    experiment = bundle.get("experiment") or {}
    primary_name, primary = primary_kpi_row(bundle)
    status, headline, reason = _decision(bundle, primary)
    period = cadence_period(bundle.get("window"), cadence)
    series = cadence_rows(bundle)
    if series is not None:
        # The page is the whole window, period by period; the header must not name one period.
        period = {**period, "label": series["span_label"], "cadence": series["cadence"]}

    # Audience views show what the program file routes to each audience's owners, nothing else.
    audiences, default_audiences = _audiences(program)
    owners = {v: audiences.get(v, set()) for v in ("support", "product", "finance")}
    kpis_of = {v: [k for k in kpis if _kpi_owner(k, program) in o] for v, o in owners.items()}
    alerts_of = {v: [a for a in insights.get("alerts") or [] if isinstance(a, dict) and a.get("owner") in o]
                 for v, o in owners.items()}
    all_teams = [t for t in chain.get("by_team") or [] if isinstance(t, dict)]
    teams_of = {v: [t for t in all_teams if t.get("team") in o] for v, o in owners.items()}
    view_teams = teams_of.get(view, all_teams)

    verdict = lambda k: kpi_verdict(k, alpha)  # noqa: E731
    verdict_title = lambda k: kpi_verdict_title(k, alpha, fmt["pval"])  # noqa: E731
    charts: dict[str, str] = {}
    pct = fmt["pct"]
    roi_fmt = lambda v: f"{v * 100:,.0f}%"  # noqa: E731
    if kpis:
        charts["forest"] = _charts.forest_svg(forest_rows(kpis, is_demo, alpha=alpha), fmt=lambda v: pct(v, nd=0),
                                              title="Relative effect per KPI with 95% interval")
    tornado = [t for t in roi.get("tornado") or [] if _finite(t.get("low_roi")) and _finite(t.get("high_roi"))]
    if tornado:
        base = next((roi[k] for k in ("estimate", "median") if _finite(roi.get(k))), 0.0)
        charts["tornado"] = _charts.tornado_svg(
            [{**t, "input": str(t.get("input", "?")).replace("_", " ")} for t in tornado], base, fmt=roi_fmt)
    gap = (roi.get("projection") or {}).get("waterfall")
    if gap:
        charts["waterfall"] = _charts.waterfall_svg(
            ("projected (plan)", gap["projected_roi"]), [(s["label"], s["roi"]) for s in gap["steps"]],
            ("realized", gap["realized_roi"]), fmt=roi_fmt)
    hist = roi.get("histogram") or {}
    if hist.get("counts") and len(hist.get("edges") or []) == len(hist["counts"]) + 1:
        markers = [("median", roi.get("median")), ("break-even", 0.0)]
        if is_demo and _finite(roi.get("truth")):
            markers.append(("truth", roi["truth"]))
        charts["histogram"] = _charts.histogram_svg(hist["edges"], hist["counts"], fmt=roi_fmt, markers=markers)
    if roi.get("costs"):
        costs = sorted(roi["costs"], key=lambda c: -(c.get("total_mode") or 0))
        charts["costs"] = _charts.bars_svg(
            [(str(c.get("name", "?")), c.get("total_mode"), c.get("category", "bar")) for c in costs], fmt=fmt["money"],
            title="Cost stack (most likely totals over the window)")
    if roi.get("pools"):
        charts["pools"] = _charts.bars_svg(
            [(str(p.get("name", "?")).replace("_", " ") + ("" if p.get("hard", True) else " (soft)"), p.get("benefit_median"),
              "good" if p.get("hard", True) else "bar2") for p in roi["pools"]],
            fmt=fmt["money"], title="Benefit by value pool (median)")
    funnel = chain.get("funnel") or {}
    if funnel:
        charts["funnel"] = _charts.funnel_svg(
            [(s.replace("_", " "), funnel.get(s)) for s in ("insights", "alerts", "acknowledged", "acted", "fixed")])
    if monitor.get("decay"):
        charts["decay"] = _charts.trend_svg(monitor["decay"], fmt=fmt["num"], title=decay_title(monitor))
    if view_teams:
        charts["ack_hours"] = _charts.bars_svg(
            [(str(t.get("team", "?")).replace("_", " "), t.get("median_hours_to_ack"), "neutral") for t in view_teams],
            fmt=lambda v: f"{v:,.1f} h", title="Median hours from alert to acknowledgement")
        charts["fix_days"] = _charts.bars_svg(
            [(str(t.get("team", "?")).replace("_", " "), t.get("median_days_to_fix"), "labor") for t in view_teams],
            fmt=lambda v: f"{v:,.1f} d", title="Median days from alert to fix")
        fixed = [(str(t.get("team", "?")).replace("_", " "), t.get("fixed", t.get("fixed_count")), "good")
                 for t in view_teams if t.get("fixed", t.get("fixed_count")) is not None]
        if fixed:
            charts["fixed_by_team"] = _charts.bars_svg(fixed, fmt=fmt["count"], title="Fixes shipped per team")
    if insights.get("topics"):
        topics = sorted(insights["topics"], key=lambda t: -(t.get("count") or 0))
        charts["topics"] = _charts.bars_svg(
            [(str(t.get("topic", "?")).replace("_", " "), t.get("count"), "bar") for t in topics], fmt=fmt["count"],
            title="Feedback items per theme")
    pain = sorted(insights.get("topics") or [], key=lambda t: -(t.get("count") or 0))
    pain = [{**t, "owner": _topic_owner(t, program)} for t in pain[:5]]
    hard_pools = [p for p in roi.get("pools") or [] if p.get("hard", True)]
    support_names = {k.get("name") for k in kpis_of["support"]}
    lists = {
        "support_kpis": kpis_of["support"], "product_kpis": kpis_of["product"], "finance_kpis": kpis_of["finance"],
        "support_alerts": alerts_of["support"], "product_alerts": alerts_of["product"],
        "support_teams": teams_of["support"], "product_teams": teams_of["product"],
        # Value pools priced from support-owned KPIs (e.g. tickets avoided), by KPI, not by pool name.
        "support_pools": [p for p in roi.get("pools") or [] if p.get("kpi") in support_names],
    }
    if series is not None:
        interval = "always-valid 95% interval" if series.get("sequential") else "95% interval"
        charts["cadence"] = _charts.trend_svg(
            [{"period": p.get("short") or p.get("label"), "estimate": p.get("estimate"), "ci_low": p.get("ci_low"),
              "ci_high": p.get("ci_high")} for p in series["periods"] if _finite(p.get("estimate"))],
            fmt=fmt["num"], max_labels=14,
            title=f"Effect on {str(series.get('kpi', '?')).replace('_', ' ')} to date, by {series['cadence']} ({interval})")
    lists["cadence_periods"] = series["periods"] if series is not None else []
    claims = _claim_rows(bundle.get("claims"))
    quasi = _quasi_rows(bundle.get("quasi"))
    rules = [r for r in bundle.get("decision_rules") or [] if isinstance(r, dict)]
    sections = [s for s in _SECTIONS[view] if _present(s, bundle, lists, claims=claims, quasi=quasi, rules=rules)]
    audience_owners = sorted(owners.get(view, ())) if view in owners else None
    return {
        "b": bundle, "program": program, "view": view, "view_title": _TITLES[view], "views": VIEWS,
        "view_titles": _TITLES, "period": period, "is_demo": is_demo, "kpis": kpis, "roi": roi,
        "chain": chain, "insights": insights, "monitor": monitor, "experiment": experiment, "alpha": alpha,
        "primary": primary, "primary_name": primary_name,
        "decision": {"status": status, "headline": headline, "reason": reason},
        "charts": charts, "sections": sections, "tree": _tree(bundle), "verdict": verdict,
        "verdict_title": verdict_title, "sanitize": _sanitize, **lists,
        "audience_owners": audience_owners, "default_audiences": default_audiences,
        "pain_points": pain, "hard_pools": hard_pools, "cadence_series": series, "claims": claims, "quasi": quasi, "rules": rules,
        "provenance": _provenance_rows(bundle),
        "check_counts": _check_counts(experiment.get("checks") or []),
        "narrative": _narrative(bundle, primary_name, primary, period, fmt, alpha),
        **fmt,
    }


def _narrative(bundle: dict, primary_name: str | None, primary: dict | None, period: dict, fmt: dict,
               alpha: float = 0.05) -> list[str]:
    """The executive story in plain sentences, built only from figures present in the bundle."""
    pct, money, label = fmt["pct"], fmt["money"], fmt["label"]
    out = []
    exp = bundle.get("experiment") or {}
    if primary is not None and _finite(primary.get("relative")):
        v = kpi_verdict(primary, alpha)
        moved = "lower" if primary["relative"] < 0 else "higher"
        ci = ""
        if _finite(primary.get("relative_ci_low")):
            ci = f" (95% interval {pct(primary.get('relative_ci_low'))} to {pct(primary.get('relative_ci_high'))})"
        versus = "in treated units than in the control group" if exp else "than its baseline"
        window = bundle.get("window") or {}
        when = (f"Over the experiment window ({window.get('start')} to {window.get('end')})" if window.get("end")
                else f"In {period['label']}")
        if v is None:
            judgement = ("not a significant change once adjusted for the number of KPIs tested (Holm)"
                         if _significant_adjusted(primary, alpha) is False else "without a multiplicity-adjusted test")
        else:
            judgement = "the change the program was built for" if v else "the opposite of what the program intended"
        out.append(f"{when}, the primary KPI {label(primary.get('name', primary_name))} was "
                   f"{pct(abs(primary['relative']), False)} {moved} {versus}{ci}: {judgement}.")
    elif primary_name:
        out.append(f"There is no result yet for the primary KPI, {label(primary_name)}.")
    roi = bundle.get("roi") or {}
    if _finite(roi.get("estimate")):
        out.append(f"The hard value ({money(roi.get('benefit'))}) against the full cost ({money(roi.get('cost'))}) gives "
                   f"an ROI of {pct(roi['estimate'], False, 0)}; allowing for every uncertainty the 90% interval is "
                   f"{pct(roi.get('ci_low'), False, 0)} to {pct(roi.get('ci_high'), False, 0)} and the chance the program "
                   f"pays for itself is {pct(roi.get('p_positive'), False, 0)}.")
    rules = [r for r in bundle.get("decision_rules") or [] if isinstance(r, dict)]
    if rules:
        counts = {s: sum(r.get("status") == s for r in rules) for s in ("pass", "fail", "inconclusive")}
        out.append(f"Of {len(rules)} decision rules in the program file, {counts['pass']} pass, {counts['fail']} fail "
                   f"and {counts['inconclusive']} are inconclusive.")
    funnel = (bundle.get("chain") or {}).get("funnel") or {}
    if funnel.get("alerts"):
        out.append(f"Teams acted on {funnel.get('acted', 0):,} of {funnel['alerts']:,} alerts and shipped "
                   f"{funnel.get('fixed', 0):,} fixes.")
    mon = bundle.get("monitor") or {}
    if mon.get("decision"):
        what = {"keep": "keep the model as it is", "retrain": "retrain the model",
                "retire": "retire the model"}.get(mon["decision"], mon["decision"])
        why = f" ({mon['reasons'][0].rstrip('.')})" if mon.get("reasons") else ""
        out.append(f"Monitoring recommends to {what}{why}.")
    return out


def _check_counts(checks: list[dict]) -> dict[str, int]:
    out = {"pass": 0, "warn": 0, "fail": 0, "skip": 0}
    for c in checks:
        out[c.get("status", "skip")] = out.get(c.get("status", "skip"), 0) + 1
    return out


def _present(section: str, b: dict, lists: dict[str, list], *, claims: list, quasi: list, rules: list) -> bool:
    has = lambda *keys: all(b.get(k) for k in keys)  # noqa: E731
    return {
        "summary": True, "erasure": bool(b.get("erasure")), "failures": bool(b.get("failures")), "tree": has("kpis") or has("roi"), "experiment": has("experiment"),
        "effects": has("kpis"), "segments": has("segments"), "arms": has("arms"), "effects_brief": has("kpis"), "effects_product": bool(lists["product_kpis"]),
        "decision_rules": bool(rules), "quasi": bool(quasi),
        "roi": has("roi"), "roi_brief": has("roi"), "assumptions": bool((b.get("roi") or {}).get("pools")),
        "chain": has("chain"), "chain_brief": has("chain"), "insights": has("insights"),
        "monitor": has("monitor"), "monitor_brief": has("monitor"), "claims": bool(claims),
        "finance_numbers": True, "finance_kpis": bool(lists["finance_kpis"]),
        "finance_trend": bool((b.get("monitor") or {}).get("decay")), "cadence": bool(lists["cadence_periods"]),
        "support_numbers": has("kpis") or has("chain"), "support_resolution": bool(lists["support_teams"]),
        "support_pain": bool((b.get("insights") or {}).get("topics")),
        "support_alerts": bool((b.get("insights") or {}).get("alerts")),
        "product_themes": has("insights"), "product_evidence": has("insights"), "product_fixes": has("chain"),
    }.get(section, False)


_ENV: jinja2.Environment | None = None


def _env() -> jinja2.Environment:
    global _ENV
    if _ENV is None:
        _ENV = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
            autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True, default=True),
            undefined=jinja2.ChainableUndefined, trim_blocks=True, lstrip_blocks=True,
        )
    return _ENV


def render_html(bundle: dict[str, Any], *, view: View = "full", cadence: Cadence | None = None) -> str:
    """Render a report bundle as one self-contained HTML page (inline CSS and SVG, no network).

    Parameters
    ----------
    bundle : dict
        The JSON form of :class:`insightroi.bundle.Bundle` (``Bundle.to_report()``); every
        section except ``program`` is optional and a section is rendered only when present.
    view : {"full", "executive", "finance", "support", "product"}
        The audience: ``full`` shows everything; the others show the slice that audience acts on.
    cadence : {"weekly", "monthly", "quarterly", "week", "month", "quarter"}, optional
        Labels the reporting period that ends at the window's end. A bundle that carries a
        cadence series (``bundle["cadence"]``, from :func:`insightroi.report.run_cadence`) is
        labelled by its span instead and gets one section per period.

    Returns
    -------
    str
        The HTML document.
    """
    check_option("view", view, VIEWS)
    if cadence is not None:
        check_option("cadence", cadence, CADENCES + CADENCE_UNITS)
    if not isinstance(bundle, dict) or "program" not in bundle:
        raise ValueError("the report bundle must be a dict with a 'program' section (see insightroi.bundle.Bundle)")
    ctx = _context(bundle, view, cadence)
    ctx["css"] = (_TEMPLATES / "report.css").read_text(encoding="utf-8")
    return _env().get_template("report.html.j2").render(**ctx)


def write_report(bundle: dict[str, Any], out_dir: str | Path, *, cadence: Cadence | None = None,
                 pdf: bool = False) -> dict[str, Path]:
    """Write ``report.html`` (full), ``report.json`` and one HTML file per audience view.

    Parameters
    ----------
    bundle : dict
        The report bundle (``insightroi.bundle.Bundle.to_report()``); ``report.json`` is this dict.
    out_dir : str or Path
        Folder to write into (created if missing).
    cadence : {"weekly", "monthly", "quarterly", "week", "month", "quarter"}, optional
        Reporting-period label preset (see :func:`render_html`).
    pdf : bool
        Also print the executive view to ``report-executive.pdf`` with headless Chromium.

    Returns
    -------
    dict of str to Path
        ``{"full": .../report.html, "json": .../report.json, "executive": .../report-executive.html, ...}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for view in VIEWS:
        target = out / ("report.html" if view == "full" else f"report-{view}.html")
        target.write_text(render_html(bundle, view=view, cadence=cadence), encoding="utf-8")
        paths[view] = target
    paths["json"] = out / "report.json"
    paths["json"].write_text(json.dumps(bundle, indent=2, default=str, allow_nan=False), encoding="utf-8")
    if pdf:
        paths["pdf"] = export_pdf(paths["executive"], out / "report-executive.pdf")
    return paths
