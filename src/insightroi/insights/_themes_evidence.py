"""Readable evidence: a short window of a customer's text around the words that matched, marked.

Pure (no I/O). A snippet is a list of ``(text, is_match)`` segments, so each output escapes its
own way: the dashboard and report templates put matches in ``<mark>`` with Jinja's autoescaping
(a ``<script>`` in feedback stays text), the CLI in bold through rich's ``Text`` (a ``[red]`` in
feedback stays text), plain output in ``**...**``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Snippet", "snippet", "snippets", "to_markdown", "to_rich", "WIDTH"]

#: Characters of text shown per snippet (ellipses added where it was cut).
WIDTH = 160


@dataclass(frozen=True)
class Snippet:
    """A window of one text, split into plain and matched segments.

    Attributes
    ----------
    segments : list of (str, bool)
        The window's text in order; ``True`` marks a matched phrase.
    matched : list of str
        The distinct phrases found, as written in the text.
    """

    segments: list[tuple[str, bool]]
    matched: list[str]

    @property
    def text(self) -> str:
        """The window as plain text."""
        return "".join(s for s, _ in self.segments)

    def to_dict(self) -> dict:
        """JSON-ready: ``{"segments": [[text, is_match], ...], "matched": [...]}``."""
        return {"segments": [[s, m] for s, m in self.segments], "matched": list(self.matched)}


def _pattern(phrases) -> re.Pattern | None:
    words = sorted({p.strip() for p in phrases if p and p.strip()}, key=len, reverse=True)
    if not words:
        return None
    # word boundaries so "power" does not mark "powerful"; whitespace inside a phrase is flexible
    alts = [r"\s+".join(re.escape(w) for w in p.split()) for p in words]
    return re.compile(r"(?<!\w)(?:" + "|".join(alts) + r")(?!\w)", re.IGNORECASE)


def snippet(text: str, phrases=(), width: int = WIDTH) -> Snippet:
    """Cut ``text`` to about ``width`` characters around its first matched phrase and mark every match.

    Parameters
    ----------
    text : str
        The customer's words.
    phrases : iterable of str
        Words or phrases to mark (matched case-insensitively, whole words only).
    width : int
        Characters kept; the window starts a third of the way before the first match, snaps to a
        word boundary, and gets "…" where it cut.

    Returns
    -------
    Snippet
    """
    text = " ".join(str(text or "").split())
    pat = _pattern(phrases)
    spans = [m.span() for m in pat.finditer(text)] if pat else []
    start, end = 0, len(text)
    if len(text) > width:
        first = spans[0][0] if spans else 0
        start = max(0, min(first - width // 3, len(text) - width))
        if start > 0:
            sp = text.find(" ", start)
            start = sp + 1 if 0 <= sp < first else start
        end = min(len(text), start + width)
        if end < len(text):
            sp = text.rfind(" ", start, end)
            end = sp if sp > start + width // 2 else end
    segs: list[tuple[str, bool]] = []
    pos = start
    for a, b in spans:
        if b <= start or a >= end:
            continue
        a, b = max(a, start), min(b, end)
        if a > pos:
            segs.append((text[pos:a], False))
        segs.append((text[a:b], True))
        pos = b
    if pos < end:
        segs.append((text[pos:end], False))
    if start > 0:
        segs.insert(0, ("…", False))
    if end < len(text):
        segs.append(("…", False))
    matched = list(dict.fromkeys(s for s, m in segs if m))
    return Snippet(segments=segs, matched=matched)


def snippets(texts, phrases=(), n: int = 5, width: int = WIDTH) -> list[Snippet]:
    """Snippets of the first ``n`` distinct texts (callers pass them best first), matched ones first.

    Texts where a phrase matched come before those where none did, keeping the callers' order
    inside each group, so the evidence shown shows the words that made the theme.

    Parameters
    ----------
    texts : iterable of str
        Candidate texts, most representative first.
    phrases : iterable of str
        Words or phrases to mark.
    n : int
        Snippets returned at most.
    width : int
        See :func:`snippet`.

    Returns
    -------
    list of Snippet
    """
    seen, out = set(), []
    for t in texts:
        key = " ".join(str(t or "").split()).lower()
        if not key or key in seen:
            continue
        seen.add(key)
        out.append(snippet(t, phrases, width))
    out.sort(key=lambda s: not s.matched)  # stable: keeps the callers' order within each group
    return out[:n]


def to_markdown(s: Snippet) -> str:
    """The snippet with matches in ``**bold**`` (plain-text outputs)."""
    return "".join(f"**{t}**" if m else t for t, m in s.segments)


def to_rich(s: Snippet):
    """The snippet as a ``rich.text.Text`` with matches in bold yellow (markup in the text stays literal)."""
    from rich.text import Text

    out = Text()
    for t, m in s.segments:
        out.append(t, style="bold yellow" if m else None)
    return out
