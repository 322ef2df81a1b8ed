"""Hand-made inline SVG charts for the report and the dashboard.

Why SVG and not Plotly: plotly.min.js is ~4.8 MB and a report is written as five files (the full
report and four audience views), so inlining it would make every file ~5 MB, and the charts
needed here (forest plot, tornado, histogram, funnel, cost bars, a trend with a band) are simple
geometry. Inline SVG keeps a report at tens of kilobytes, needs no JavaScript (so it prints to PDF
exactly as shown and cannot log console errors), scales without blur and stays readable offline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

__all__ = ["forest_svg", "tornado_svg", "histogram_svg", "funnel_svg", "bars_svg", "trend_svg", "waterfall_svg", "PALETTE"]

PALETTE = {
    "ink": "#1f2937", "muted": "#6b7280", "grid": "#e5e7eb", "axis": "#9ca3af",
    "good": "#15803d", "bad": "#b91c1c", "neutral": "#2563eb", "warn": "#b45309", "truth": "#7c3aed",
    "band": "#dbeafe", "bar": "#3b82f6", "bar2": "#93c5fd",
    "platform": "#2563eb", "labor": "#0d9488", "change_management": "#d97706",
}
_FONT = 'font-family="Inter, Segoe UI, Helvetica, Arial, sans-serif"'


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    ticks, t = [], start
    while t <= hi + 1e-12 * abs(hi or 1):
        ticks.append(round(t, 12))
        t += step
    return ticks


def _scale(lo: float, hi: float, a: float, b: float) -> Callable[[float], float]:
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _svg(width: int, height: int, body: str, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'style="max-width:{width}px" role="img" aria-label="{escape(title)}" {_FONT} font-size="12">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def _pad_range(values: Sequence[float], include_zero: bool = True) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if include_zero:
        vals.append(0.0)
    if not vals:
        return -1.0, 1.0
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
    return lo - pad, hi + pad


def _x_axis(x, ticks, y0: float, y1: float, fmt: Callable[[float], str]) -> str:
    out = []
    for t in ticks:
        px = x(t)
        out.append(f'<line x1="{px:.1f}" y1="{y0}" x2="{px:.1f}" y2="{y1}" stroke="{PALETTE["grid"]}"/>')
        out.append(
            f'<text x="{px:.1f}" y="{y1 + 15}" text-anchor="middle" fill="{PALETTE["muted"]}">{escape(fmt(t))}</text>'
        )
    return "".join(out)


def forest_svg(rows: Sequence[dict], *, fmt: Callable[[float], str], title: str = "Effects with intervals",
               width: int = 980, label_width: int = 260) -> str:
    """Forest plot: one row per KPI with estimate, interval, optional truth marker.

    ``rows`` items: ``label``, ``estimate``, ``ci_low``, ``ci_high``, optional ``truth`` and
    ``good`` (True/False/None: colours the point green/red/blue).
    """
    rows = [r for r in rows if r.get("estimate") is not None]
    row_h, top, bottom = 34, 14, 34
    height = top + bottom + row_h * max(len(rows), 1)
    vals = [v for r in rows for v in (r["estimate"], r.get("ci_low"), r.get("ci_high"), r.get("truth"))]
    lo, hi = _pad_range(vals)
    x = _scale(lo, hi, label_width, width - 20)
    body = [_x_axis(x, _nice_ticks(lo, hi), top - 4, height - bottom + 4, fmt)]
    zx = x(0.0)
    body.append(f'<line x1="{zx:.1f}" y1="{top - 6}" x2="{zx:.1f}" y2="{height - bottom + 4}" '
                f'stroke="{PALETTE["ink"]}" stroke-width="1.2"/>')
    for i, r in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        colour = {True: PALETTE["good"], False: PALETTE["bad"]}.get(r.get("good"), PALETTE["neutral"])
        body.append(f'<text x="{label_width - 12}" y="{cy + 4:.1f}" text-anchor="end" fill="{PALETTE["ink"]}">'
                    f"{escape(str(r['label']))}</text>")
        if r.get("ci_low") is not None and r.get("ci_high") is not None:
            body.append(f'<line x1="{x(r["ci_low"]):.1f}" y1="{cy:.1f}" x2="{x(r["ci_high"]):.1f}" y2="{cy:.1f}" '
                        f'stroke="{colour}" stroke-width="3" stroke-linecap="round"/>')
        body.append(f'<circle cx="{x(r["estimate"]):.1f}" cy="{cy:.1f}" r="6" fill="{colour}">'
                    f"<title>{escape(str(r['label']))}: {escape(fmt(r['estimate']))}</title></circle>")
        if r.get("truth") is not None:
            tx = x(r["truth"])
            body.append(f'<path d="M{tx:.1f},{cy - 8:.1f} l6,8 l-6,8 l-6,-8 z" fill="none" '
                        f'stroke="{PALETTE["truth"]}" stroke-width="2"><title>truth {escape(fmt(r["truth"]))}'
                        f"</title></path>")
    return _svg(width, height, "".join(body), title)


def tornado_svg(rows: Sequence[dict], base: float, *, fmt: Callable[[float], str],
                title: str = "Sensitivity of ROI (tornado)", width: int = 980, label_width: int = 290,
                max_rows: int = 10) -> str:
    """Tornado chart: for each input, ROI at its low and high value with the others at their mode."""
    rows = list(rows)[:max_rows]
    row_h, top, bottom = 28, 12, 34
    height = top + bottom + row_h * max(len(rows), 1)
    lo, hi = _pad_range([v for r in rows for v in (r["low_roi"], r["high_roi"])] + [base])
    x = _scale(lo, hi, label_width, width - 20)
    body = [_x_axis(x, _nice_ticks(lo, hi), top - 4, height - bottom + 4, fmt)]
    for i, r in enumerate(rows):
        y = top + row_h * i + 4
        a, b = sorted((r["low_roi"], r["high_roi"]))
        body.append(f'<text x="{label_width - 10}" y="{y + 14}" text-anchor="end" fill="{PALETTE["ink"]}">'
                    f"{escape(str(r['input']))}</text>")
        body.append(f'<rect x="{x(a):.1f}" y="{y}" width="{max(x(base) - x(a), 0):.1f}" height="{row_h - 8}" '
                    f'fill="{PALETTE["bad"]}" opacity="0.75"/>')
        body.append(f'<rect x="{x(base):.1f}" y="{y}" width="{max(x(b) - x(base), 0):.1f}" height="{row_h - 8}" '
                    f'fill="{PALETTE["good"]}" opacity="0.75"/>')
    bx = x(base)
    body.append(f'<line x1="{bx:.1f}" y1="{top - 6}" x2="{bx:.1f}" y2="{height - bottom + 4}" '
                f'stroke="{PALETTE["ink"]}" stroke-width="1.5"/>')
    return _svg(width, height, "".join(body), title)


def waterfall_svg(start: tuple[str, float], steps: Sequence[tuple[str, float]], end: tuple[str, float], *,
                  fmt: Callable[[float], str], title: str = "Projected vs realized ROI by driver",
                  width: int = 980, label_width: int = 290) -> str:
    """Waterfall: a start bar, one floating bar per step (green up, red down), an end bar.

    The steps are drawn from the running total, so they close on ``end`` only when they add up to
    ``end - start`` -- the chart shows a gap that does not add up rather than hiding it.
    """
    row_h, top, bottom = 28, 12, 34
    n = len(steps) + 2
    height = top + bottom + row_h * n
    running, spans = start[1], []
    for _, v in steps:
        spans.append((running, running + v))
        running += v
    lo, hi = _pad_range([start[1], end[1], *[x for s in spans for x in s]])
    x = _scale(lo, hi, label_width, width - 20)
    body = [_x_axis(x, _nice_ticks(lo, hi), top - 4, height - bottom + 4, fmt)]
    rows = [(start[0], 0.0, start[1], PALETTE["neutral"])]
    rows += [(label, a, b, PALETTE["good"] if b >= a else PALETTE["bad"]) for (label, _), (a, b) in zip(steps, spans)]
    rows.append((end[0], 0.0, end[1], PALETTE["neutral"]))
    for i, (label, a, b, colour) in enumerate(rows):
        y = top + row_h * i + 4
        x0, x1 = sorted((x(a), x(b)))
        body.append(f'<text x="{label_width - 10}" y="{y + 14}" text-anchor="end" fill="{PALETTE["ink"]}">'
                    f"{escape(label)}</text>")
        body.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1.0):.1f}" height="{row_h - 8}" '
                    f'fill="{colour}" opacity="0.8"/>')
    return _svg(width, height, "".join(body), title)


def histogram_svg(edges: Sequence[float], counts: Sequence[int], *, fmt: Callable[[float], str],
                  markers: Sequence[tuple[str, float]] = (), title: str = "Distribution of simulated ROI",
                  width: int = 980, height: int = 260) -> str:
    """Histogram of Monte Carlo draws; bars below zero in red, markers as labelled vertical lines."""
    if not counts:
        return ""
    left, right, top, bottom = 50, 20, 20 + 14 * len(markers), 34
    x = _scale(edges[0], edges[-1], left, width - right)
    ymax = max(counts) or 1
    y = _scale(0, ymax, height - bottom, top)
    body = [_x_axis(x, _nice_ticks(edges[0], edges[-1], 6), top, height - bottom, fmt)]
    for i, c in enumerate(counts):
        x0, x1 = x(edges[i]), x(edges[i + 1])
        colour = PALETTE["bad"] if edges[i + 1] <= 0 else PALETTE["bar"]
        body.append(f'<rect x="{x0 + 0.5:.1f}" y="{y(c):.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
                    f'height="{(height - bottom) - y(c):.1f}" fill="{colour}" opacity="0.85"/>')
    body.append(f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" '
                f'stroke="{PALETTE["axis"]}"/>')
    for k, (label, value) in enumerate(markers):
        if value is None or not (edges[0] <= value <= edges[-1]):
            continue
        mx = x(value)
        colour = PALETTE["truth"] if label.startswith("truth") else PALETTE["ink"]
        body.append(f'<line x1="{mx:.1f}" y1="{top - 4}" x2="{mx:.1f}" y2="{height - bottom}" stroke="{colour}" '
                    f'stroke-dasharray="4 3" stroke-width="1.5"/>')
        body.append(f'<text x="{mx + 4:.1f}" y="{12 + 14 * k}" fill="{colour}">{escape(label)}</text>')
        body.append(f'<line x1="{mx:.1f}" y1="{8 + 14 * k}" x2="{mx:.1f}" y2="{top}" stroke="{colour}" '
                    f'stroke-dasharray="1 2"/>')
    return _svg(width, height, "".join(body), title)


def funnel_svg(steps: Sequence[tuple[str, float]], *, title: str = "Decision chain funnel",
               width: int = 980, label_width: int = 130) -> str:
    """Horizontal funnel: one bar per stage, with the count and the share of the previous stage."""
    steps = [(s, v) for s, v in steps if v is not None]
    if not steps:
        return ""
    row_h, top = 34, 8
    height = top * 2 + row_h * len(steps)
    # When the first stage dwarfs the rest (insights vs alerts, often 100x), scale to the second
    # stage and draw the first as a broken bar, so the later stages stay readable.
    broken = len(steps) > 1 and steps[0][1] > 8 * max(steps[1][1], 1)
    vmax = (steps[1][1] if broken else max(v for _, v in steps)) or 1
    usable = width - label_width - 170
    body = []
    for i, (label, v) in enumerate(steps):
        y = top + row_h * i
        w = usable if (broken and i == 0) else max(usable * (v / vmax), 2)
        xs = label_width + (usable - w) / 2
        shade = PALETTE["bar"] if i % 2 == 0 else PALETTE["neutral"]
        body.append(f'<text x="{label_width - 10}" y="{y + 20}" text-anchor="end" fill="{PALETTE["ink"]}">'
                    f"{escape(label)}</text>")
        body.append(f'<rect x="{xs:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" rx="3" fill="{shade}"/>')
        if broken and i == 0:
            mid = label_width + usable / 2
            body.append(f'<path d="M{mid - 9:.1f},{y + 30} l8,-26 M{mid + 1:.1f},{y + 30} l8,-26" '
                        f'stroke="#ffffff" stroke-width="4"/>')
        share = ""
        if i > 0 and steps[i - 1][1]:
            share = f"  ({v / steps[i - 1][1]:.0%} of previous)"
        body.append(f'<text x="{label_width + usable + 8}" y="{y + 20}" fill="{PALETTE["ink"]}">'
                    f"{v:,.0f}{escape(share)}</text>")
    return _svg(width, height, "".join(body), title)


def bars_svg(rows: Sequence[tuple[str, float, str]], *, fmt: Callable[[float], str], title: str,
             width: int = 520, label_width: int = 210) -> str:
    """Horizontal bars (label, value, colour key in PALETTE or a CSS colour), value printed at the end."""
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return ""
    row_h, top = 28, 6
    height = top * 2 + row_h * len(rows)
    label_width = max(label_width, min(300, int(max(len(str(r[0])) for r in rows) * 6.4) + 14))
    vmax = max(abs(r[1]) for r in rows) or 1
    usable = width - label_width - 80
    body = []
    for i, (label, v, key) in enumerate(rows):
        y = top + row_h * i
        w = max(usable * abs(v) / vmax, 1)
        colour = PALETTE.get(key, key)
        body.append(f'<text x="{label_width - 10}" y="{y + 18}" text-anchor="end" fill="{PALETTE["ink"]}">'
                    f"{escape(label)}</text>")
        body.append(f'<rect x="{label_width}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" rx="2" fill="{colour}"/>')
        body.append(f'<text x="{label_width + w + 6:.1f}" y="{y + 18}" fill="{PALETTE["ink"]}">{escape(fmt(v))}</text>')
    return _svg(width, height, "".join(body), title)


def trend_svg(points: Sequence[dict], *, fmt: Callable[[float], str], title: str = "Effect by period",
              width: int = 980, height: int = 230, max_labels: int | None = None) -> str:
    """Line of per-period estimates with their interval as a band (lift decay, finance trend, cadence).

    ``max_labels`` thins the axis labels to about that many (every point keeps its tooltip): forty
    weekly labels on one axis overlap.
    """
    pts = [p for p in points if p.get("estimate") is not None]
    if not pts:
        return ""
    left, right, top, bottom = 70, 30, 16, 34
    vals = [v for p in pts for v in (p["estimate"], p.get("ci_low"), p.get("ci_high"))]
    lo, hi = _pad_range(vals)
    n = len(pts)
    x = (lambda i: (left + width - right) / 2) if n == 1 else (lambda i: left + i * (width - left - right) / (n - 1))
    y = _scale(lo, hi, height - bottom, top)
    body = []
    for t in _nice_ticks(lo, hi, 5):
        body.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{width - right}" y2="{y(t):.1f}" stroke="{PALETTE["grid"]}"/>')
        body.append(f'<text x="{left - 8}" y="{y(t) + 4:.1f}" text-anchor="end" fill="{PALETTE["muted"]}">'
                    f"{escape(fmt(t))}</text>")
    body.append(f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - right}" y2="{y(0):.1f}" stroke="{PALETTE["ink"]}"/>')
    if all(p.get("ci_low") is not None and p.get("ci_high") is not None for p in pts) and n > 1:
        upper = " ".join(f"{x(i):.1f},{y(p['ci_high']):.1f}" for i, p in enumerate(pts))
        lower = " ".join(f"{x(i):.1f},{y(p['ci_low']):.1f}" for i, p in reversed(list(enumerate(pts))))
        body.append(f'<polygon points="{upper} {lower}" fill="{PALETTE["band"]}"/>')
    line = " ".join(f"{x(i):.1f},{y(p['estimate']):.1f}" for i, p in enumerate(pts))
    body.append(f'<polyline points="{line}" fill="none" stroke="{PALETTE["neutral"]}" stroke-width="2.5"/>')
    step = max(1, math.ceil(n / max_labels)) if max_labels else 1
    for i, p in enumerate(pts):
        body.append(f'<circle cx="{x(i):.1f}" cy="{y(p["estimate"]):.1f}" r="4.5" fill="{PALETTE["neutral"]}">'
                    f"<title>{escape(str(p.get('period', i)))}: {escape(fmt(p['estimate']))}</title></circle>")
        if i % step and i != n - 1:
            continue
        body.append(f'<text x="{x(i):.1f}" y="{height - bottom + 18}" text-anchor="middle" fill="{PALETTE["muted"]}">'
                    f"{escape(str(p.get('period', i)))}</text>")
    return _svg(width, height, "".join(body), title)
