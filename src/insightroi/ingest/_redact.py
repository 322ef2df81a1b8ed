"""PII redaction: e-mail addresses, phone numbers and (Luhn-valid) payment card numbers.

Two stages keep redaction cheap on millions of rows: a vectorised RE2 pre-filter
(:data:`PREFILTER`, run by DuckDB or pyarrow over the whole column) selects the few texts that
could hold PII, and only those go through the exact Python patterns below. The pre-filter is a
strict superset of the exact patterns so no PII is missed by skipping the rest: an e-mail needs ``@``; a card 13 digits with
at most one space or dash between them; a phone a ``+``, a ``(``, or seven digits with at least
one separator. Plain digit runs (order numbers) and prices do
not pass it, which keeps the Python stage to the few rows that need it.

Patterns use ``[0-9]`` (not ``\\d``, which in Python also matches non-ASCII digits) so the two
stages agree.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from insightroi.ingest._validate import REDACT_COLUMNS

__all__ = ["redact_pii", "redact_table", "PREFILTER", "EMAIL_TOKEN", "PHONE_TOKEN", "CARD_TOKEN", "luhn_valid"]

EMAIL_TOKEN = "[EMAIL]"
PHONE_TOKEN = "[PHONE]"
CARD_TOKEN = "[CARD]"

# RE2 syntax (no look-arounds): the superset every exact match below satisfies.
# A phone without '+' or '(' has >= 7 digits and a separator: k digits, the first separator, then
# 7-k more digits (separators optional), one branch per k.
PREFILTER = "|".join(
    [r"@", r"\+[0-9]", r"\([0-9]", r"[0-9](?:[ \-]?[0-9]){12}", r"[0-9]{7,}[ .\-][0-9]"]
    + [rf"[0-9]{{{k}}}[ .\-][0-9](?:[ .\-]?[0-9]){{{6 - k},}}" for k in range(1, 7)]
)

# Digit runs that could be a card or a phone: digits, spaces, dots, dashes and parentheses,
# 7+ characters, starting with a digit, '+' or '('. The pattern starts with a character class, so
# Python's regex engine skips ahead to candidates quickly; the exact patterns then run only there.
_CANDIDATE = re.compile(r"[0-9+(][0-9 ().\-]{5,}[0-9]")
_NUMBERS = re.compile(
    # 13-19 digits, optionally grouped by single spaces or dashes; not part of a longer run.
    r"(?P<card>(?<![0-9+])[0-9](?:[ \-]?[0-9]){12,18}(?![0-9]))"
    # A leading +country code, an optional (area) code, then digit groups joined by one
    # separator. Not preceded by a word character, '+' or '-' (so SKU-2025-0001 and order ids
    # stay), and not followed by a word character, '-' or ':' (so '2025-01-15 10:30' stays).
    r"|(?P<phone>(?<![\w+\-])"
    r"(?:\+[0-9]{1,3}[ .\-]?)?"
    r"(?:\([0-9]{1,4}\)[ .\-]?)?"
    r"[0-9]{2,5}(?:[ .\-][0-9]{2,8}){1,4}"
    r"(?![\w\-:])"
    r"|(?<![\w+\-])\+[0-9]{7,15}(?![\w\-:]))"
)
_EMAIL_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_DATE = re.compile(r"[0-9]{4}[./\-][0-9]{1,2}[./\-][0-9]{1,2}|[0-9]{1,2}[./\-][0-9]{1,2}[./\-][0-9]{2,4}")
_PREFILTER = re.compile(PREFILTER)


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check used by payment cards (ISO/IEC 7812)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(text: str) -> str:
    digits = text.replace(" ", "").replace("-", "")
    return CARD_TOKEN if luhn_valid(digits) else text


def _phone(text: str) -> str:
    n_digits = sum(ch.isdigit() for ch in text)
    if not 7 <= n_digits <= 15 or _DATE.fullmatch(text):
        return text
    if not text.startswith(("+", "(")):
        # A bare digit-group run is a phone only with one kind of separator and at least three
        # groups (or 10+ digits): this keeps amounts like '12.50 99.99' and '19.99 x 3' intact.
        seps = [ch for ch in text if not ch.isdigit()]
        if len(set(seps)) > 1 or (len(seps) < 2 and n_digits < 10):
            return text
    return PHONE_TOKEN


def _emails(text: str) -> str:
    # Anchored on each '@' (a regex would retry the local part from every letter of every word).
    out, pos, at = [], 0, text.find("@")
    while at != -1:
        start = at
        while start > pos and text[start - 1] in _EMAIL_LOCAL:
            start -= 1
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        if start < at and domain:
            out += [text[pos:start], EMAIL_TOKEN]
            pos = domain.end()
        at = text.find("@", max(at + 1, pos))
    out.append(text[pos:])
    return "".join(out)


def _numbers(text: str) -> str:
    out, pos = [], 0
    for cand in _CANDIDATE.finditer(text):
        # One character past the candidate lets the look-ahead see what follows it.
        for m in _NUMBERS.finditer(text, cand.start(), min(cand.end() + 1, len(text))):
            if m.start() < pos:
                continue
            value = m.group(0)
            token = _card(value) if m.lastgroup == "card" else _phone(value)
            if token is not value:
                out += [text[pos:m.start()], token]
                pos = m.end()
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def redact_pii(text: str | None) -> str | None:
    """Replace e-mail addresses, phone numbers and payment card numbers in ``text`` with tokens.

    Parameters
    ----------
    text : str or None
        Free text (a review, a ticket, a return reason). ``None`` is returned unchanged.

    Returns
    -------
    str or None
        The text with ``[EMAIL]``, ``[PHONE]`` and ``[CARD]`` in place of what they replace; every
        other character is preserved exactly, so taxonomies can be re-run on the stored text.

    Notes
    -----
    Cards are 13-19 digits (optionally grouped by spaces or dashes) that pass the Luhn check
    (Luhn, US patent 2,950,048, 1960; ISO/IEC 7812-1), so order numbers and other digit runs that
    fail it are kept. Phones need 7-15 digits (ITU-T E.164) written with a leading ``+``, an
    area code in parentheses, or at least two separators of one kind (or 10+ digits in two groups);
    an unseparated digit run such as an order number is kept, as are ISO and day/month dates.
    """
    if text is None or not _PREFILTER.search(text):
        return text
    return redact_matched(text)


def redact_matched(text: str) -> str:
    """:func:`redact_pii` for a text that already passed :data:`PREFILTER` (vectorised callers)."""
    if "@" in text:
        text = _emails(text)
    return _numbers(text)


def redact_table(table: pa.Table, kind: str) -> pa.Table:
    """Redact the free-text columns of one chunk of validated rows bound for table ``kind``.

    Parameters
    ----------
    table : pyarrow.Table
        Validated rows (the columns of ``kind``'s spec, plus ingestion's own).
    kind : str
        The target table; its free-text columns are ``REDACT_COLUMNS[kind]``.

    Returns
    -------
    pyarrow.Table
        The same rows with PII replaced by tokens in the free-text columns. Only rows that pass
        :data:`PREFILTER` (vectorised) go through the Python patterns.
    """
    for col in REDACT_COLUMNS.get(kind, ()):
        if col not in table.column_names:
            continue
        values = table.column(col).combine_chunks().cast(pa.string())
        mask = pc.fill_null(pc.match_substring_regex(values, PREFILTER), False)
        if not pc.any(mask).as_py():
            continue
        redacted = pa.array([redact_matched(v) for v in values.filter(mask).to_pylist()], pa.string())
        table = table.set_column(
            table.column_names.index(col), col, pc.replace_with_mask(values, mask, redacted)
        )
    return table
