"""Promote a proposed theme into the program's taxonomy: one ``[[taxonomy]]`` block added to the TOML file.

The block is inserted as text right after the file's last ``[[taxonomy]]`` block, so every
comment, blank line and key order the user wrote stays as it was (a TOML library that rewrites
the document would drop or move them unless it is a style-preserving one such as ``tomlkit``,
which insightroi does not depend on). The new file is parsed and validated as a program before
it replaces the old one; a file that would not load is never written.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from insightroi.errors import InsightRoiError

__all__ = ["PromotionError", "topic_block", "promote_theme"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_RESERVED = {"other", "unclassifiable"}
_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")


class PromotionError(InsightRoiError):
    """The theme cannot be promoted (bad name, name taken, unreadable program file)."""


def _s(v: str) -> str:
    # a JSON string is a valid TOML basic string (same escapes: \" \\ \n \t \uXXXX)
    return json.dumps(str(v), ensure_ascii=False)


def topic_block(name: str, *, owner: str, keywords, examples, description: str = "", severity: str = "medium",
                comment: str | None = None) -> str:
    """The TOML text of one ``[[taxonomy]]`` entry.

    Parameters
    ----------
    name : str
        Topic name (``^[a-z][a-z0-9_]*$``).
    owner : str
        The team that must hear about it.
    keywords, examples : iterable of str
        As in the program file.
    description : str
        What the topic covers.
    severity : str
        low | medium | high | critical.
    comment : str, optional
        A ``#`` comment line put above the block (where it came from).

    Returns
    -------
    str
        The block, ending in a newline.
    """
    lines = [f"# {c}" for c in (comment or "").splitlines() if c.strip()]
    lines += ["[[taxonomy]]", f"topic = {_s(name)}"]
    if description:
        lines.append(f"description = {_s(description)}")
    lines.append("keywords = [" + ", ".join(_s(k) for k in keywords) + "]")
    lines.append("examples = [" + ", ".join(_s(e) for e in examples) + "]")
    lines += [f"owner = {_s(owner)}", f"severity = {_s(severity)}"]
    return "\n".join(lines) + "\n"


def _insert_at(text: str) -> int:
    """Character offset after the last ``[[taxonomy]]`` block (before the comments that head the next table)."""
    lines = text.splitlines(keepends=True)
    last = None
    for i, ln in enumerate(lines):
        m = _HEADER.match(ln)
        if m and ln.lstrip().startswith("[[") and m.group(1).strip() == "taxonomy":
            last = i
    if last is None:
        return len(text)
    nxt = len(lines)
    for j in range(last + 1, len(lines)):
        if _HEADER.match(lines[j]) and lines[j].lstrip().startswith("["):
            nxt = j
            break
    # comments and blank lines right above the next header belong to it (its section title)
    k = nxt
    while k > last + 1 and (not lines[k - 1].strip() or lines[k - 1].lstrip().startswith("#")):
        k -= 1
    return sum(len(ln) for ln in lines[:k])


def promote_theme(program_path, theme: dict, *, name: str, owner: str = "unassigned", severity: str = "medium",
                  keywords=None, n_keywords: int = 5, n_examples: int = 3, description: str | None = None,
                  source: str = "insightroi themes") -> str:
    """Add ``theme`` to the taxonomy of the program file at ``program_path`` as topic ``name``.

    Parameters
    ----------
    program_path : str or Path
        The program TOML file (or a folder holding ``insightroi.toml``).
    theme : dict
        A proposed theme (:meth:`insightroi.insights.Theme.to_dict`): ``terms``, ``examples``,
        ``size`` and optionally ``summary`` / ``label``.
    name : str
        The new topic's name.
    owner : str
        The team that owns it ("unassigned" until someone is named).
    severity : str
        low | medium | high | critical.
    keywords : list of str, optional
        Keywords to write; default the theme's top ``n_keywords`` terms that no other topic uses.
    n_keywords, n_examples : int
        How many terms / representative examples to copy.
    description : str, optional
        Default: the theme's summary, else a line naming its source, size and terms.
    source : str
        Named in the comment above the block.

    Returns
    -------
    str
        The block written.

    Raises
    ------
    PromotionError
        Bad or taken name, no such file, or a result that would not validate (nothing written then).
    """
    from insightroi.program import parse_program

    path = Path(program_path)
    if path.is_dir():
        path = path / "insightroi.toml"
    if not _NAME.match(name or "") or name in _RESERVED:
        raise PromotionError(f"--name {name!r}: a topic name is lower-case letters, digits and _ starting with a "
                             f"letter, and not {' or '.join(sorted(_RESERVED))}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PromotionError(f"{path}: cannot read the program file ({exc.strerror or exc})") from None
    try:
        prog = parse_program(text, source=str(path))
    except Exception as exc:
        raise PromotionError(f"{path}: the program file does not load as it is, fix it first: {exc}") from None
    if name in {t.topic for t in prog.taxonomy}:
        raise PromotionError(f"{path}: topic {name!r} is already in the taxonomy; choose another --name")
    used = {k.lower() for t in prog.taxonomy for k in t.keywords}
    if keywords is None:
        keywords = [t for t in theme.get("terms") or [] if t.lower() not in used][:n_keywords]
    examples = [" ".join(str(e).split())[:300] for e in (theme.get("examples") or [])[:n_examples]]
    if not keywords and not examples:
        raise PromotionError("the theme has neither terms nor examples to describe the new topic")
    desc = description or theme.get("summary") or (
        f"Customer feedback about {', '.join((theme.get('terms') or [])[:5])} "
        f"({theme.get('size', '?')} items when proposed).")
    block = topic_block(name, owner=owner, keywords=keywords, examples=examples, description=desc, severity=severity,
                        comment=f"Promoted from a theme proposed by `{source}` ({theme.get('size', '?')} items).")
    at = _insert_at(text)
    head = text[:at]
    if head and not head.endswith("\n"):
        head += "\n"
    new = head + ("\n" if head.strip() else "") + block + ("\n" if text[at:].strip() and not text[at:].startswith("\n") else "") + text[at:]
    try:
        parse_program(new, source=str(path))
    except Exception as exc:
        raise PromotionError(f"{path}: the promoted topic would not validate, nothing written: {exc}") from None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return block
