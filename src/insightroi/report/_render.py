"""Rendering a report bundle (CONTRACTS.md) to one self-contained HTML page per audience."""

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

from insightroi.errors import check_option
from insightroi.report import _charts

__all__ = ["render_html", "write_report", "cadence_period", "VIEWS", "CADENCES", "format_helpers"]

View = Literal["full", "executive", "finance", "support", "product"]
Cadence = Literal["weekly", "monthly", "quarterly"]
VIEWS: tuple[str, ...] = ("full", "executive", "finance", "support", "product")
CADENCES: tuple[str, ...] = ("weekly", "monthly", "quarterly")

_TEMPLATES = Path(__file__).parent / "templates"
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}

# Which sections each audience sees (order is page order). "full" shows everything present.
_SECTIONS: dict[str, tuple[str, ...]] = {
    "full": ("summary", "failures", "tree", "experiment", "effects", "roi", "assumptions", "chain", "insights",
             "monitor", "claims"),
    "executive": ("summary", "failures", "effects_brief", "roi_brief", "chain_brief", "monitor_brief", "claims"),
    "finance": ("finance_numbers", "finance_trend", "roi", "assumptions"),
    "support": ("support_numbers", "support_resolution", "support_pain", "support_alerts"),
    "product": ("product_themes", "product_evidence", "product_fixes", "effects_product"),
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
        return str(x).replace("_", " ")

    return {"money": money, "pct": pct, "num": num, "pval": pval, "count": count, "label": label}


# ---------------------------------------------------------------------------------------------
# cadence
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
        check_option("cadence", cadence, CADENCES)
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
def _verdict(k: dict) -> bool | None:
    """True when the interval sits on the desired side of zero, False on the wrong side, else None."""
    lo, hi = k.get("ci_low"), k.get("ci_high")
    if k.get("control_mean") is None or not (_finite(lo) and _finite(hi)):
        return None
    want_down = k.get("direction", "decrease") == "decrease"
    if hi < 0:
        return want_down
    if lo > 0:
        return not want_down
    return None


def _primary_kpi(bundle: dict) -> dict | None:
    kpis = bundle.get("kpis") or []
    name = (bundle.get("program") or {}).get("primary_kpi")
    for k in kpis:
        if k.get("name") == name:
            return k
    business = [k for k in kpis if k.get("layer") == "business" and _finite(k.get("p_value"))]
    if business:
        return min(business, key=lambda k: k["p_value"])
    return kpis[0] if kpis else None


def _decision(bundle: dict, primary: dict | None) -> tuple[str, str, str]:
    """(status, headline, reason) of the decision the evidence supports."""
    roi = bundle.get("roi") or {}
    p = roi.get("p_positive")
    good = _verdict(primary) if primary else None
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


def _forest_rows(kpis: list[dict], is_demo: bool, relative: bool = True) -> list[dict]:
    keys = ("relative", "relative_ci_low", "relative_ci_high", "truth_relative") if relative else \
        ("estimate", "ci_low", "ci_high", "truth")
    rows = []
    for k in kpis:
        if not _finite(k.get(keys[0])):
            continue
        rows.append({
            "label": str(k.get("name", "?")).replace("_", " "),
            "estimate": k[keys[0]], "ci_low": k.get(keys[1]), "ci_high": k.get(keys[2]),
            "truth": k.get(keys[3]) if is_demo else None, "good": _verdict(k),
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


def _context(bundle: dict, view: str, cadence: str | None) -> dict[str, Any]:
    program = bundle.get("program") or {}
    fmt = format_helpers(program.get("currency", "USD"))
    is_demo = bool(bundle.get("is_demo"))
    kpis = bundle.get("kpis") or []
    roi = bundle.get("roi") or {}
    chain = bundle.get("chain") or {}
    insights = bundle.get("insights") or {}
    monitor = bundle.get("monitor") or {}
    experiment = bundle.get("experiment") or {}
    primary = _primary_kpi(bundle)
    status, headline, reason = _decision(bundle, primary)
    period = cadence_period(bundle.get("window"), cadence)
    charts: dict[str, str] = {}
    pct = fmt["pct"]
    roi_fmt = lambda v: f"{v * 100:,.0f}%"  # noqa: E731
    if kpis:
        charts["forest"] = _charts.forest_svg(_forest_rows(kpis, is_demo), fmt=lambda v: pct(v, nd=0),
                                              title="Relative effect per KPI with 95% interval")
    tornado = [t for t in roi.get("tornado") or [] if _finite(t.get("low_roi")) and _finite(t.get("high_roi"))]
    if tornado:
        base = next((roi[k] for k in ("estimate", "median") if _finite(roi.get(k))), 0.0)
        charts["tornado"] = _charts.tornado_svg(
            [{**t, "input": str(t.get("input", "?")).replace("_", " ")} for t in tornado], base, fmt=roi_fmt)
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
        charts["decay"] = _charts.trend_svg(monitor["decay"], fmt=lambda v: pct(v, nd=0),
                                            title="Effect on the primary KPI by period (lift decay)")
    if chain.get("by_team"):
        teams = chain["by_team"]
        charts["ack_hours"] = _charts.bars_svg(
            [(str(t.get("team", "?")).replace("_", " "), t.get("median_hours_to_ack"), "neutral") for t in teams],
            fmt=lambda v: f"{v:,.1f} h", title="Median hours from alert to acknowledgement")
        charts["fix_days"] = _charts.bars_svg(
            [(str(t.get("team", "?")).replace("_", " "), t.get("median_days_to_fix"), "labor") for t in teams],
            fmt=lambda v: f"{v:,.1f} d", title="Median days from alert to fix")
        charts["fixed_by_team"] = _charts.bars_svg(
            [(str(t.get("team", "?")).replace("_", " "), t.get("fixed", t.get("fixed_count")), "good") for t in teams
             if t.get("fixed", t.get("fixed_count")) is not None],
            fmt=fmt["count"], title="Fixes shipped per team")
    if insights.get("topics"):
        topics = sorted(insights["topics"], key=lambda t: -(t.get("count") or 0))
        charts["topics"] = _charts.bars_svg(
            [(str(t.get("topic", "?")).replace("_", " "), t.get("count"), "bar") for t in topics], fmt=fmt["count"],
            title="Feedback items per theme")
    support_kpis = [k for k in kpis if k.get("owner") == "support" or "ticket" in str(k.get("name", "?")) or "deflect" in str(k.get("name", "?"))]
    product_kpis = [k for k in kpis if k.get("owner") in ("product", "product_quality", "ml_platform")
                    or "defect" in str(k.get("name", "?")) or "review" in str(k.get("name", "?"))]
    support_teams = {"support", "customer_service", "cs"}
    pain = sorted(insights.get("topics") or [], key=lambda t: -(t.get("count") or 0))
    hard_pools = [p for p in roi.get("pools") or [] if p.get("hard", True)]
    sections = [s for s in _SECTIONS[view] if _present(s, bundle)]
    return {
        "b": bundle, "program": program, "view": view, "view_title": _TITLES[view], "views": VIEWS,
        "view_titles": _TITLES, "period": period, "is_demo": is_demo, "kpis": kpis, "roi": roi,
        "chain": chain, "insights": insights, "monitor": monitor, "experiment": experiment,
        "primary": primary, "decision": {"status": status, "headline": headline, "reason": reason},
        "charts": charts, "sections": sections, "tree": _tree(bundle), "verdict": _verdict,
        "sanitize": _sanitize, "support_kpis": support_kpis, "product_kpis": product_kpis,
        "support_alerts": [a for a in insights.get("alerts") or [] if a.get("owner") in support_teams],
        "support_teams": [t for t in chain.get("by_team") or [] if t.get("team") in support_teams],
        "pain_points": pain[:5], "hard_pools": hard_pools,
        "check_counts": _check_counts(experiment.get("checks") or []),
        "narrative": _narrative(bundle, primary, period, fmt),
        **fmt,
    }


def _narrative(bundle: dict, primary: dict | None, period: dict, fmt: dict) -> list[str]:
    """The executive story in plain sentences, built only from figures present in the bundle."""
    pct, money, label = fmt["pct"], fmt["money"], fmt["label"]
    out = []
    exp = bundle.get("experiment") or {}
    if primary is not None and _finite(primary.get("relative")):
        v = _verdict(primary)
        moved = "lower" if primary["relative"] < 0 else "higher"
        ci = ""
        if _finite(primary.get("relative_ci_low")):
            ci = f" (95% interval {pct(primary.get('relative_ci_low'))} to {pct(primary.get('relative_ci_high'))})"
        versus = "in treated units than in the control group" if exp else "than its baseline"
        window = bundle.get("window") or {}
        when = (f"Over the experiment window ({window.get('start')} to {window.get('end')})" if window.get("end")
                else f"In {period['label']}")
        judgement = {True: "the change the program was built for",
                     False: "the opposite of what the program intended",
                     None: "not distinguishable from no change"}[v]
        out.append(f"{when}, {label(primary.get('name', 'the primary KPI'))} was {pct(abs(primary['relative']), False)} {moved} "
                   f"{versus}{ci}: {judgement}.")
    roi = bundle.get("roi") or {}
    if _finite(roi.get("estimate")):
        out.append(f"The hard value ({money(roi.get('benefit'))}) against the full cost ({money(roi.get('cost'))}) gives "
                   f"an ROI of {pct(roi['estimate'], False, 0)}; allowing for every uncertainty the 90% interval is "
                   f"{pct(roi.get('ci_low'), False, 0)} to {pct(roi.get('ci_high'), False, 0)} and the chance the program "
                   f"pays for itself is {pct(roi.get('p_positive'), False, 0)}.")
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


def _present(section: str, b: dict) -> bool:
    has = lambda *keys: all(b.get(k) for k in keys)  # noqa: E731
    return {
        "summary": True, "failures": bool(b.get("failures")), "tree": has("kpis") or has("roi"), "experiment": has("experiment"),
        "effects": has("kpis"), "effects_brief": has("kpis"), "effects_product": has("kpis"),
        "roi": has("roi"), "roi_brief": has("roi"), "assumptions": bool((b.get("roi") or {}).get("pools")),
        "chain": has("chain"), "chain_brief": has("chain"), "insights": has("insights"),
        "monitor": has("monitor"), "monitor_brief": has("monitor"), "claims": has("claims"),
        "finance_numbers": True, "finance_trend": bool((b.get("monitor") or {}).get("decay")),
        "support_numbers": has("kpis") or has("chain"), "support_resolution": bool((b.get("chain") or {}).get("by_team")),
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
        The report bundle (CONTRACTS.md); every section except ``program`` is optional and a
        section is rendered only when present.
    view : {"full", "executive", "finance", "support", "product"}
        The audience: ``full`` shows everything; the others show the slice that audience acts on.
    cadence : {"weekly", "monthly", "quarterly"}, optional
        Labels the reporting period that ends at the window's end.

    Returns
    -------
    str
        The HTML document.
    """
    check_option("view", view, VIEWS)
    if cadence is not None:
        check_option("cadence", cadence, CADENCES)
    if not isinstance(bundle, dict) or "program" not in bundle:
        raise ValueError("the report bundle must be a dict with a 'program' section (see CONTRACTS.md)")
    ctx = _context(bundle, view, cadence)
    ctx["css"] = (_TEMPLATES / "report.css").read_text(encoding="utf-8")
    return _env().get_template("report.html.j2").render(**ctx)


def write_report(bundle: dict[str, Any], out_dir: str | Path, *, cadence: Cadence | None = None,
                 pdf: bool = False) -> dict[str, Path]:
    """Write ``report.html`` (full), ``report.json`` and one HTML file per audience view.

    Parameters
    ----------
    bundle : dict
        The report bundle.
    out_dir : str or Path
        Folder to write into (created if missing).
    cadence : {"weekly", "monthly", "quarterly"}, optional
        Reporting-period label preset.
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
        from insightroi.report._pdf import export_pdf

        paths["pdf"] = export_pdf(paths["executive"], out / "report-executive.pdf")
    return paths
