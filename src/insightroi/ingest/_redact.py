"""PII redaction: e-mail addresses, phone numbers, payment cards, IBANs, street addresses and
secrets in URLs, for free text; keyed pseudonyms for id columns that carry PII.

Two stages keep redaction cheap on millions of rows. A vectorised RE2 pre-filter
(:data:`PREFILTER`, run by pyarrow over the whole column) selects the few texts that could hold
PII, and only those go through the exact detectors:

* phones: ``phonenumbers`` (Google's libphonenumber metadata) finds numbers in any format for a
  default region (``INSIGHTROI_PHONE_REGION``, default US); national numbers of other countries
  (a leading trunk ``0``) and ``00`` international prefixes are tried against
  :data:`FALLBACK_REGIONS`;
* IBANs: ``schwifty`` validates the country length, the BBAN structure and the mod-97 checksum;
* cards: 13-19 digits with any separators (spaces, double spaces, dots, dashes) that pass the Luhn
  check, with a length that fits the issuer prefix (13 digits only an old Visa, 15 only Amex/JCB),
  not after a barcode label (EAN, UPC, ISBN, IMEI);
* e-mails: internationalised local parts and domains, ``＠``, spaced (``jdoe @ example . com``) and
  spelled-out (``jane dot doe at example dot com``, ``jane (at) example (dot) com``) forms;
* street addresses: a street-shaped phrase (house number, capitalised name, street type; or
  ``Rue``/``Calle``/``Via`` first) with an address cue before it ('ship to', 'I live at') or a tail
  after it (', Springfield', ', Apt 4B', 'IL 62704'), confirmed by ``usaddress`` (a CRF address
  tagger: number, street name, street type and nothing else). pyap was measured too: it finds
  only complete addresses with city, state and ZIP (7 of 36 in the corpus) at 3 ms a text;
* secrets: values of secret-named URL parameters (``?token=``, ``access_token=``, ``X-Amz-Signature=``),
  ``password: ...`` labels, bearer tokens, JWTs and well-known API-key formats (AWS, GitHub,
  Stripe, Slack, Google).

Within one chunk (:func:`redact_table`) each distinct candidate text is redacted once, and only by
the detectors whose own pre-filter branch matches it (RE2 again, on the distinct texts); a chunk
with 5,000 or more of them is shared with a forked worker process (Linux, two or more cores;
``INSIGHTROI_REDACT_WORKERS`` sets the number of workers, 0 for none).

Id columns (:data:`ID_COLUMNS`: customer ids, the chain-event actor, the reviewer, assignment
units) are not tokenised but replaced by :func:`pseudonymize` when their value holds PII: an
HMAC-SHA256 under a key kept outside the store, so joins across tables still match.

Detection runs on a normalised copy of the text (full-width and other compatibility forms of
digits, letters and punctuation folded to ASCII by NFKC, any decimal digit to 0-9, Unicode dashes
and spaces to ``-`` and space); the fold maps one character to one, so a match's span is the
same in the original text, which is what is kept around the tokens.

The pre-filter is a strict superset of what the detectors accept: each detector only accepts a
match that contains a part the pre-filter looks for (seven digits with at most three separators
between neighbours, two letters and two digits followed by eleven letters or digits, an ``@``, a
bracketed ``at`` or the word ``dot``, a secret-named ``name=``, a known key prefix, or a house
number followed by a street type), and the pre-filter's character classes hold every character
the normalisation folds onto the ones the detectors read. ``test_ingest_redact_fuzz.py`` checks
both with RE2 itself.
"""

from __future__ import annotations

import bisect
import functools
import gc
import hashlib
import hmac
import json
import multiprocessing
import os
import re
import secrets
import sys
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
import usaddress
from phonenumbers import Leniency, PhoneNumberMatcher
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from schwifty.registry import get_iban_spec

from insightroi.ingest._validate import REDACT_COLUMNS

__all__ = [
    "redact_pii",
    "redact_matched",
    "redact_table",
    "redact_row",
    "pseudonymize",
    "PREFILTER",
    "EMAIL_TOKEN",
    "PHONE_TOKEN",
    "CARD_TOKEN",
    "IBAN_TOKEN",
    "ADDRESS_TOKEN",
    "SECRET_TOKEN",
    "REDACTION_TOKENS",
    "PSEUDONYM_PREFIX",
    "ID_COLUMNS",
    "redact_raw",
    "ID_PREFILTER",
    "FALLBACK_REGIONS",
    "luhn_valid",
]

EMAIL_TOKEN = "[EMAIL]"
PHONE_TOKEN = "[PHONE]"
CARD_TOKEN = "[CARD]"
IBAN_TOKEN = "[IBAN]"
ADDRESS_TOKEN = "[ADDRESS]"
SECRET_TOKEN = "[SECRET]"
#: Every token redaction writes into text (a column other than free text holding one was redacted).
REDACTION_TOKENS = (EMAIL_TOKEN, PHONE_TOKEN, CARD_TOKEN, IBAN_TOKEN, ADDRESS_TOKEN, SECRET_TOKEN)

#: Pseudonyms of PII-bearing ids start with this (then 32 hex digits of an HMAC-SHA256).
PSEUDONYM_PREFIX = "pii_"

#: Id columns whose values are pseudonymised when they look like PII (an e-mail as customer id,
#: a phone number as chain actor). Plain ids (``C000123``) are left as they are.
ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "feedback": ("customer_id",),
    "orders": ("customer_id",),
    "tickets": ("customer_id",),
    "refunds": ("customer_id",),
    "chain_events": ("actor",),
    "review_labels": ("reviewer",),
    "assignments": ("unit_id",),
}

#: Regions tried for a national-format number (leading trunk 0) the default region does not know.
# Austria and Italy are left out: their variable-length fixed-line plans accept almost any digit run
# that starts with 0 (FedEx codes, IP addresses). Override with INSIGHTROI_PHONE_FALLBACK="GB,DE,...".
FALLBACK_REGIONS = ("GB", "DE", "FR", "ES", "NL", "BE", "CH", "IE", "AU", "IN", "JP", "BR", "MX")

# ---------------------------------------------------------------------------------------------
# Normalisation: one character to one, so spans carry over to the original text.

_DASHES = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212")


class _Fold(dict):
    """``str.translate`` table, filled on first sight of each non-ASCII character."""

    def __missing__(self, cp: int) -> int:
        c = chr(cp)
        d = unicodedata.decimal(c, None)
        if d is not None:
            out = 48 + d
        else:
            n = unicodedata.normalize("NFKC", c)
            if len(n) == 1 and n.isascii() and not n.isdigit():
                out = ord(n)
            elif c in _DASHES:
                out = 45
            else:
                out = cp
        self[cp] = out
        return out


_FOLD = _Fold()


def _fold(text: str) -> str:
    return text if text.isascii() else text.translate(_FOLD)


# ---------------------------------------------------------------------------------------------
# The pre-filter. Literal characters in classes mean the same to RE2 and Python's re; only the
# digit class differs ({D}: RE2's \d is ASCII-only, Python's is Unicode Nd).

# Every character _fold maps onto a separator the digit detectors read (space . - ( ) /).
_SEP_RAW = (
    " .\\-()/\u00a0\u2000-\u200a\u202f\u205f\u3000\u2010-\u2015\u2212\ufe63\uff0d\u2024\ufe52\uff0e"
    "\u207d\u208d\ufe35\ufe59\uff08\u207e\u208e\ufe36\ufe5a\uff09\uff0f"
)
_AT_RAW = "@\ufe6b\uff20"
# Letters an IBAN may be written in (ASCII and full-width Latin; the detector checks the original
# characters, so other compatibility letters that fold to ASCII are no IBAN), and what folds to
# the space or dash an IBAN may be grouped with.
_IBAN_LETTER_RAW = "A-Za-z\uff21-\uff3a\uff41-\uff5a"
_IBAN_SEP_RAW = " \u00a0\u2000-\u200a\u202f\u205f\u3000\\-\u2010-\u2015\u2212\ufe63\uff0d"
_STREET_TYPES = (
    "st|street|str|ave|avenue|av|rd|road|blvd|boulevard|dr|drive|ln|lane|ct|court|pl|place|way|ter|terrace|"
    "cir|circle|pkwy|parkway|hwy|highway|sq|square|trl|trail|loop|row|plz|plaza|cres|crescent|close|walk|"
    "mews|grove|gardens|gdns|hill|park|pike|alley|aly|expy|expressway|fwy|freeway|broadway|rue|calle|via|"
    "avenida|allee"
)
_SECRET_PREFIXES = r"eyJ|AKIA|ASIA|gh[pousr]_|[sr]k_live_|[sr]k_test_|xox[abposr]-|AIza"
# Phones, cards: seven digits, at most three separators between neighbours.
_DIGITS_BRANCH = "{D}(?:[" + _SEP_RAW + "]{0,3}{D}){6}"
# Street addresses: a house number, up to five words, a street type.
_ADDRESS_BRANCH = r"(?i:[0-9][a-z]?[ \t]+(?:[^ \t]+[ \t]+){0,5}(?:" + _STREET_TYPES + r")(?:[^a-z]|$))"
_PREFILTER_BRANCHES = [
    _DIGITS_BRANCH + "|" + _ADDRESS_BRANCH,
    "[" + _AT_RAW + "]",
    # IBANs: two letters, two digits, eleven more letters or digits (grouped by spaces or dashes).
    "[" + _IBAN_LETTER_RAW + "]{2}{D}{2}(?:[" + _IBAN_SEP_RAW + "]?[" + _IBAN_LETTER_RAW + "0-9{D}]){11}",
    # Spelled-out e-mails: a bracketed 'at' or the word 'dot'.
    r"(?i:[\[({<][ \t]*at[ \t]*[\])}>])",
    r"(?i:(?:^|[^a-z0-9_])dot(?:[^a-z0-9_]|$))",
    # Secrets: a secret-named parameter or label, bearer tokens, well-known key formats.
    r"(?i:(?:token|secret|pass|pwd|key|sig|sid|session|credential|jwt|auth|code)[a-z0-9_.\-]*[ \t]*[:=])",
    r"(?i:bearer[ \t])",
    _SECRET_PREFIXES,
]
#: RE2 pattern (pyarrow ``match_substring_regex``) every text holding detectable PII matches.
PREFILTER = "|".join(_PREFILTER_BRANCHES).replace("{D}", r"\p{Nd}")

#: The pre-filter for id columns: as :data:`PREFILTER`, except that a digit run must open the value
#: (``+4155552671``, ``(415) 555-2671``). Ids such as ``c-0268601`` or ``SKU-2025-0001`` carry a
#: prefix that no phone has; sending every such id through the phone detector made ingestion of a
#: customer-id column seven times slower for nothing.
ID_PREFILTER = "|".join(
    [r"^[ \t]*[+(]?{D}(?:[" + _SEP_RAW + "]{0,3}{D}){6}"] + _PREFILTER_BRANCHES[1:]
).replace("{D}", r"\p{Nd}")

# Which detectors a text needs: each detector only accepts a match that holds its own part of the
# pre-filter (see the module notes), so a detector whose branch does not match the text cannot
# change it. redact_table asks RE2 for these once per chunk (vectorised); one text alone runs all.
_G_SECRET, _G_EMAIL, _G_IBAN, _G_DIGITS, _G_ADDRESS = 1, 2, 4, 8, 16
_G_ALL = 31
_GATES = [
    (_G_SECRET, "|".join(_PREFILTER_BRANCHES[5:8])),
    (_G_EMAIL, "|".join([_PREFILTER_BRANCHES[1]] + _PREFILTER_BRANCHES[3:5])),
    (_G_IBAN, _PREFILTER_BRANCHES[2]),
    (_G_DIGITS, _DIGITS_BRANCH),
    (_G_ADDRESS, _ADDRESS_BRANCH),
]
_GATES = [(bit, pattern.replace("{D}", r"\p{Nd}")) for bit, pattern in _GATES]

# The same branches for one text at a time (redact_pii), each behind a necessary condition that
# plain ``in`` checks answer in nanoseconds: most texts fail them all and never reach a regex.
_PY_BRANCHES = [re.compile(b.replace("{D}", r"\d")) for b in _PREFILTER_BRANCHES]
_BRACKETS = "([{<"
_KEY_PREFIXES = ("eyJ", "AKIA", "ASIA", "AIza", "xox", "_")
_PY_DIGIT_PAIR = re.compile(r"\d\d")


def _prefilter(text: str) -> bool:
    """Python's equivalent of :data:`PREFILTER` (same branches, cheap gates first)."""
    b = _PY_BRANCHES
    if b[0].search(text):
        return True
    if "@" in text or "\ufe6b" in text or "\uff20" in text:
        return True
    if _PY_DIGIT_PAIR.search(text) and b[2].search(text):
        return True
    low = text.lower()
    if "at" in low and any(c in text for c in _BRACKETS) and b[3].search(text):
        return True
    if "dot" in low and b[4].search(text):
        return True
    if ("=" in text or ":" in text) and b[5].search(text):
        return True
    if "bearer" in low and b[6].search(text):
        return True
    return any(k in text for k in _KEY_PREFIXES) and b[7].search(text) is not None


_PY_ID_DIGITS = re.compile(r"^[ \t]*[+(]?\d(?:[" + _SEP_RAW + r"]{0,3}\d){6}")


def _id_prefilter(value: str) -> bool:
    """Python's equivalent of :data:`ID_PREFILTER`."""
    return _PY_ID_DIGITS.search(value) is not None or any(b.search(value) for b in _PY_BRANCHES[1:])


# The part of a digit match the pre-filter's first branch sees (on folded text).
_DIGIT_RUN = re.compile(r"[0-9](?:[ .\-/()]{0,3}[0-9]){6}")

# ---------------------------------------------------------------------------------------------
# Secrets (raw ASCII text; case-insensitive only in ASCII, so the pre-filter is broader).

_A = re.ASCII | re.IGNORECASE
_QUERY_PARAM = re.compile(r"[?&#;]([a-z0-9_.\-]+)=([^&#\s\"'<>]+)", _A)
_SECRET_WORDS = frozenset(
    "token secret password passwd pass pwd passcode key apikey sig signature sid session sessionid "
    "credential credentials jwt auth".split()
)
_NOT_SECRET_WORDS = frozenset("type expires expiry hint method url uri length len format name".split())
_CAMEL = re.compile(r"[a-z0-9]+|[A-Z][a-z0-9]*")
_SECRET_TEXT = re.compile(
    r"\bbearer[ \t]+(?P<v1>[a-z0-9\-._~+/]{12,}=*)"
    r"|\b(?:password|passwd|pwd|passcode|api[ _\-]?key|secret|token)[ \t]*[:=][ \t]*(?P<v2>[^\s,;]{4,})",
    _A,
)
# Words _SECRET_TEXT's labels contain (a cheap test before the regex; 'api key' contains 'key').
_SECRET_LABELS = ("pass", "pwd", "key", "secret", "token")
_SECRET_FORMATS = re.compile(
    r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{30,}|\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}|\bAIza[0-9A-Za-z_\-]{35}",
    re.ASCII,
)


def _name_words(name: str) -> set[str]:
    return {w.lower() for part in re.split(r"[_.\-]", name) for w in _CAMEL.findall(part)} | {name.lower()}


def _value_end(raw: str, start: int, end: int) -> int:
    # A sentence's closing punctuation is not part of the value ('...?token=abc123).').
    while end > start and raw[end - 1] in ".,;:!?)]}":
        end -= 1
    return end


def _secrets(raw: str, spans: list) -> None:
    if "=" in raw:
        for m in _QUERY_PARAM.finditer(raw):
            words = _name_words(m.group(1))
            if words & _NOT_SECRET_WORDS:
                continue
            end = _value_end(raw, m.start(2), m.end(2))
            value = raw[m.start(2):end]
            # An OAuth 'code' is a secret; a discount 'code=SAVE10' is not.
            code = "code" in words and len(value) >= 12 and any(ch.isdigit() for ch in value)
            if (words & _SECRET_WORDS or code) and len(value) >= 4:
                spans.append((m.start(2), end, SECRET_TOKEN))
    low = raw.lower()
    if ("bearer" in low or any(w in low for w in _SECRET_LABELS)) and ("=" in raw or ":" in raw or "bearer" in low):
        for m in _SECRET_TEXT.finditer(raw):
            g = "v1" if m.group("v1") else "v2"
            end = _value_end(raw, m.start(g), m.end(g))
            if end - m.start(g) >= 4:
                spans.append((m.start(g), end, SECRET_TOKEN))
    if any(k in raw for k in _KEY_PREFIXES):
        for m in _SECRET_FORMATS.finditer(raw):
            spans.append((m.start(), m.end(), SECRET_TOKEN))


# ---------------------------------------------------------------------------------------------
# E-mail addresses (folded text).

_LOCAL_ASCII = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-'")
# Image and document names (icon@2x.png) are not addresses.
_FILE_EXTENSIONS = frozenset(
    "png jpg jpeg gif svg webp bmp ico tif tiff pdf txt js css htm html php json xml csv md py".split()
)
_KNOWN_TLDS = (
    "com|org|net|edu|gov|mil|int|info|biz|io|co|me|app|dev|ai|shop|store|online|email|mail|uk|de|fr|es|it|nl|be|"
    "ch|at|se|no|dk|fi|pl|pt|ie|ca|au|nz|jp|cn|in|br|mx|ru|us|eu|kr|za|ar|cl|tr|gr|cz|hu|ro|il|sg|hk|tw"
)
# Spaced and spelled-out forms (raw text: the words are ASCII).
_AT = r"(?:[ \t]*[\[({<][ \t]*at[ \t]*[\])}>][ \t]*|[ \t]+at[ \t]+)"
_DOT = r"(?:[ \t]*[\[({<][ \t]*dot[ \t]*[\])}>][ \t]*|[ \t]+dot[ \t]+)"
# Repetitions are bounded (an address has a few dots, not hundreds) so that 'a dot a dot ... at'
# costs linear, not quadratic, time.
_SPELLED = re.compile(
    r"(?<![\w.\-])[a-z0-9_%+\-]{1,64}(?:(?:" + _DOT + r"|\.)[a-z0-9_%+\-]{1,64}){0,6}" + _AT
    + r"[a-z0-9\-]{1,63}(?:(?:" + _DOT + r"|\.)[a-z0-9\-]{1,63}){0,4}(?:" + _DOT + r"|\.)(?:" + _KNOWN_TLDS
    + r")(?![\w\-])",
    _A,
)
_SIGNAL_AT = re.compile(r"[\[({<][ \t]*at[ \t]*[\])}>]", _A)
_SIGNAL_DOT = re.compile(r"dot(?![a-z0-9_])(?<![a-z0-9_]...)", _A)


def _spelled_signal(text: str, low: str) -> bool:
    """A bracketed 'at' or the word 'dot' (two scans that each start on a literal)."""
    return ("dot" in low and _SIGNAL_DOT.search(text) is not None) or (
        "at" in low and any(c in text for c in "[({<") and _SIGNAL_AT.search(text) is not None
    )
_ONE_SIDED_DOT = re.compile(r"[^ \t]\.[ \t]|[ \t]\.[^ \t]")
_SPACED = re.compile(
    r"(?<![\w.\-])[a-z0-9._%+\-]{1,64}[ \t]*@[ \t]*[a-z0-9\-]{1,63}(?:[ \t]*\.[ \t]*[a-z0-9\-]{1,63}){0,4}[ \t]*\.[ \t]*(?:"
    + _KNOWN_TLDS + r")(?![\w\-])",
    _A,
)


def _wordish(ch: str) -> bool:
    # Letters, digits and combining marks (the vowel signs of अजय@डाटा.भारत are marks, not letters).
    return ch.isalnum() or (not ch.isascii() and unicodedata.category(ch)[0] == "M")


def _domain_end(norm: str, i: int) -> int:
    """End of the domain that starts at ``i`` (0 when there is none): labels of letters, digits,
    marks and inner hyphens, joined by '.' or '。', ending in a TLD of 2+ letters (or xn--)."""
    j, n = i, len(norm)
    while j < n and (_wordish(norm[j]) or norm[j] in "-.\u3002"):
        j += 1
    labels = re.split("[.\u3002]", norm[i:j])
    # Drop a trailing sentence full stop or an unfinished label ('x@y.com.', 'x@y.c-').
    while labels and (not labels[-1] or labels[-1].startswith("-") or labels[-1].endswith("-")):
        labels.pop()
    if len(labels) < 2 or any(not lab or lab[0] == "-" or lab[-1] == "-" for lab in labels):
        return 0
    tld = labels[-1]
    ok = tld.lower().startswith("xn--") or (len(tld) >= 2 and all(_wordish(ch) and not ch.isdigit() for ch in tld))
    if not ok or tld.lower() in _FILE_EXTENSIONS:
        return 0
    return i + sum(len(lab) for lab in labels) + len(labels) - 1


def _emails(norm: str, raw: str, spans: list) -> None:
    at = norm.find("@")
    secrets_found = list(spans)
    unmatched_at = False
    while at != -1:
        start = at
        while start > 0 and (norm[start - 1] in _LOCAL_ASCII or (not norm[start - 1].isascii() and _wordish(norm[start - 1]))):
            start -= 1
        while start < at and norm[start] in ".'":
            start += 1
        end = _domain_end(norm, at + 1)
        if start < at and end:
            spans.append((start, end, EMAIL_TOKEN))
        if not (start < at and end) or any(s < end and start < e for s, e, _ in secrets_found):
            unmatched_at = True
        at = norm.find("@", at + 1)
    # A spaced match holds one '@'; where a plain match took that '@' (and no secret overlaps it)
    # the spaced one overlaps it and is dropped, so the scan (a sixth of a text's redaction time)
    # runs only for an '@' the plain form left.
    if unmatched_at:
        for m in _SPACED.finditer(norm):
            # Spaced out means spaced on both sides of the '@' and of each dot, in one case for the
            # top-level domain: 'Bit disappointed with @anonymous. No one ...' is a mention.
            v = m.group(0)
            at = v.index("@")
            if (v[at - 1] == " ") != (v[at + 1] == " ") or _ONE_SIDED_DOT.search(v):
                continue
            tld = v.rsplit(".", 1)[1].strip()
            if tld.islower() or v.isupper():
                spans.append((m.start(), m.end(), EMAIL_TOKEN))
    low = raw.lower()
    if _spelled_signal(raw, low):
        for m in _SPELLED.finditer(raw):
            # The plain word 'at' needs a spelled-out dot too ('bought it at amazon.com' stays), and
            # in the plain form neither side may be an everyday word ('look at this dot com era').
            words = _WORD.findall(m.group(0).lower())
            plain = not any(ch in m.group(0) for ch in "[({<")
            if plain and (words[0] in _EVERYDAY or words[words.index("at") + 1] in _EVERYDAY):
                continue
            if _spelled_signal(m.group(0), m.group(0).lower()):
                spans.append((m.start(), m.end(), EMAIL_TOKEN))


_WORD = re.compile(r"[a-z0-9_%+\-]+")
_EVERYDAY = frozenset(
    "a an the this that these those it its is was be been are were i me my we us our you your he him his she her they "
    "them their look looked looking arrived arrive came come got get go went stay stayed home here there where when "
    "what who which one all any some no not so and or but if then than also just only very really too still even "
    "again once now later soon today tomorrow tonight noon night work store shop site page price priced sold buy "
    "bought order ordered delivered left sent ship shipped available cheaper better best worse great good bad".split()
)


# ---------------------------------------------------------------------------------------------
# Cards, IBANs and phones (folded text).

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


# Digits joined by up to three separators; not glued to a letter (SKU-4411-2290-1177 stays).
_CARD_RUN = re.compile(r"[0-9](?:[ .\-]{0,3}[0-9])*")
_IBAN_RUN = re.compile(r"[A-Za-z]{2}[0-9]{2}(?:[ \-]?[A-Za-z0-9]){11,30}")
# Two digits after two letters, found from the digits (a leading letter class would make the
# engine try every letter of the text).
_TWO_DIGITS = re.compile(r"[0-9]{2}(?<=[A-Za-z]{2}[0-9]{2})")


def _matches_after(pattern: re.Pattern, text: str, bad_prev) -> Iterator[re.Match]:
    """``pattern.finditer(text)`` keeping matches whose preceding character is not ``bad_prev``.

    The same as a look-behind in the pattern, which would stop the regex engine from skipping
    ahead to the pattern's first character; a rejected match is retried one character later.
    """
    pos = 0
    while (m := pattern.search(text, pos)) is not None:
        if m.start() and bad_prev(text[m.start() - 1]):
            pos = m.start() + 1
            continue
        yield m
        pos = max(m.end(), m.start() + 1)
_NOT_DIGIT = re.compile(r"[^0-9]")
_DATE = re.compile(r"[0-9]{4}[./\-][0-9]{1,2}[./\-][0-9]{1,2}|[0-9]{1,2}[./\-][0-9]{1,2}[./\-][0-9]{2,4}")
_PREV_WORD = re.compile(r"([A-Za-z0-9]+)[ \t]+$")
_IPV4 = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
# Words that make the number after them an identifier, not a phone (order 4155552671).
_ID_WORDS = frozenset(
    "order invoice inv tracking track ref reference sku item serial sn isbn ean upc gtin fedex ups usps dhl po case "
    "ticket confirmation conf lot model flight batch parcel shipment rma receipt zip postcode plz cep postal".split()
)
_ID_QUALIFIERS = frozenset("no nr num number id".split())
_TAIL_PUNCT = " \t#:."


def _id_context(before: str) -> bool:
    """Whether ``before`` ends with a word that makes the next number an id ('order no. ', 'invoice #')."""
    tail = before[-32:].rstrip(_TAIL_PUNCT)
    for _ in range(2):
        i = len(tail)
        while i and tail[i - 1].isascii() and tail[i - 1].isalpha():
            i -= 1
        word = tail[i:].lower()
        if word in _ID_WORDS:
            return True
        if word not in _ID_QUALIFIERS:
            return False
        tail = tail[:i].rstrip(_TAIL_PUNCT)
    return False


# Card lengths by issuer prefix (ISO/IEC 7812 IIN ranges of the networks in use): a 13-digit
# number is a card only if it is an old Visa, 14 digits only Diners, 15 only Amex or old JCB.
_CARD_PREFIXES = {
    13: ("4",),
    14: ("30", "36", "38", "39"),
    15: ("34", "37", "1800", "2131"),
    16: ("2", "3", "4", "5", "6"),
    17: ("4", "5", "6", "35"),
    18: ("4", "5", "6", "35"),
    19: ("4", "5", "6", "35"),
}
_BARCODE_WORDS = frozenset("ean upc gtin isbn issn imei serial sn tracking barcode".split())


def _issuer_length_ok(digits: str) -> bool:
    return digits.startswith(_CARD_PREFIXES.get(len(digits), ()))


def _barcode_context(before: str) -> bool:
    """Whether ``before`` ends with a barcode or serial label (EAN-13 codes can pass Luhn)."""
    tail = before.rstrip(_TAIL_PUNCT)
    i = len(tail)
    while i and tail[i - 1].isascii() and tail[i - 1].isalpha():
        i -= 1
    return tail[i:].lower() in _BARCODE_WORDS


def _cards(norm: str, spans: list) -> None:
    for m in _CARD_RUN.finditer(norm):
        if m.end() - m.start() < 13:
            continue
        # Not glued to a word, a '+' or a '-' (SKU-4411-2290-1177-0042, +4915112345678).
        prev = norm[m.start() - 1:m.start()]
        if prev and (prev in "+-_" or (prev.isascii() and prev.isalnum())):
            continue
        digits = _NOT_DIGIT.sub("", m.group(0))
        if _issuer_length_ok(digits) and luhn_valid(digits) and not _barcode_context(norm[max(0, m.start() - 32):m.start()]):
            spans.append((m.start(), m.end(), CARD_TOKEN))


@functools.cache
def _iban_length(country: str) -> int:
    """IBAN length for a country code (0 when the country has no IBAN)."""
    try:
        return get_iban_spec(country).iban_length
    except (SchwiftyException, KeyError):
        return 0


def _iban_char(ch: str) -> bool:
    # What the pre-filter's IBAN branch admits: ASCII, full-width Latin, any decimal digit, and
    # what folds to a space or a dash.
    return ch.isascii() or "\uff21" <= ch <= "\uff5a" or ch.isdecimal() or _fold(ch) in (" ", "-")


def _ibans(norm: str, raw: str, spans: list) -> None:
    # Anchored on digit pairs (a digit class lets the regex engine skip ahead; a letter class
    # would try every letter of the text), then matched from the two letters before each.
    pos = 0
    while True:
        d = _TWO_DIGITS.search(norm, pos)
        if not d:
            return
        pos = d.start() + 1
        m = _IBAN_RUN.match(norm, d.start() - 2) if d.start() >= 2 else None
        if not m:
            continue
        prev = norm[m.start() - 1:m.start()]
        if not (prev and (prev == "_" or (prev.isascii() and prev.isalnum()))):
            text = m.group(0)
            ends = [i + 1 for i, ch in enumerate(text) if ch.isalnum()]
            compact = "".join(ch for ch in text if ch.isalnum()).upper()
            # The country fixes the length, so a following word the run swallowed ('DE89... please')
            # is cut off and one validation decides.
            n = _iban_length(compact[:2])
            if n and len(compact) >= n:
                try:
                    IBAN(compact[:n])
                except SchwiftyException:
                    pass
                else:
                    end = m.start() + ends[n - 1]
                    if all(_iban_char(ch) for ch in raw[m.start():end]):
                        spans.append((m.start(), end, IBAN_TOKEN))
                        pos = end


def _start_ok(norm: str, start: int) -> bool:
    """Whether what precedes a number lets it be a phone.

    Not when it continues something: glued to a Latin letter or 'X-' (SKU-123-4567), a date or a
    time (15/01/2025 10:30), a longer digit run (USPS 9400 1000 ...), right after a code such as
    'AA1' (UPS 1Z 999 AA1 01 2345 6784), or after a word such as 'order' or 'invoice'.
    """
    before = norm[max(0, start - 40):start]
    if norm.startswith("+", start):
        # ZIP+4 30301-1234 is a postcode, not +4 (Austria) 30301 1234.
        return not (before[-1:].isascii() and before[-1:].isalnum())
    last, prev = before[-1:], before[-2:-1]
    if last in _CURRENCY or (last == " " and prev in _CURRENCY):
        return False  # an amount ($110000.00, EUR 1 250 000)
    if last in ("+", "_") or (last.isascii() and last.isalpha()) or (last == "-" and prev.isalnum()):
        return False
    if last in ("/", ":", " ", ".", "-") and prev.isdigit():
        return False
    word = _prev_word(before)
    if word and any(ch.isdigit() for ch in word) and any(ch.isalpha() for ch in word):
        return False
    return not _id_context(before)


def _prev_word(before: str) -> str:
    """``_PREV_WORD.search(before).group(1)`` ('' for no match) without a regex that tries every
    start: the ASCII word before the blanks that end ``before`` ('$' also matches before a final
    newline)."""
    b = before[:-1] if before.endswith("\n") else before
    t = b.rstrip(" \t")
    if len(t) == len(b):
        return ""
    i = len(t)
    while i and t[i - 1].isascii() and t[i - 1].isalnum():
        i -= 1
    return t[i:]


def _end_ok(norm: str, end: int) -> bool:
    """Whether what follows a number lets it be a phone: not a letter, a time or more digits."""
    after = norm[end:end + 2]
    first = after[:1]
    return not ((first.isascii() and first.isalpha()) or (first in (":", "/", " ", ".", "-") and after[1:2].isdigit()))


def _phone_ok(norm: str, start: int, end: int, number, fmt_min_digits: int = 10, valid: bool | None = None,
              edges_ok: bool = False) -> bool:
    # edges_ok: the caller has checked _start_ok and (without '+') _end_ok for these very bounds.
    text = norm[start:end]
    if not _DIGIT_RUN.search(text) or _DATE.fullmatch(text.strip()) or _IPV4.fullmatch(text):
        return False
    if not edges_ok and not _start_ok(norm, start):
        return False
    if not edges_ok and not text.startswith("+") and not _end_ok(norm, end):
        return False
    n_digits = sum(ch.isdigit() for ch in text)
    formatted = text.startswith(("+", "(")) or not text.isdigit()
    if formatted and n_digits >= fmt_min_digits:
        return phonenumbers.is_possible_number(number)
    # A bare digit run (or a short one) is a phone only when the number is a real, assigned one
    # (``valid``: the caller has already asked; is_valid_number costs tens of microseconds).
    return phonenumbers.is_valid_number(number) if valid is None else valid


# A run the matcher would take whole: digits and ' .-' (no '/', which starts its date and
# second-number checks), at most one bracket pair and only around the area code, first or after
# a country code ('(415) 555-2671', '+1 (555) 010-1234').
_PLAIN_RUN = re.compile(r"(?:\+[0-9]{1,3}[ .\-]{0,3})?(?:\([0-9]+\))?[0-9 .\-]*")
_ANY_DIGIT = re.compile(r"\d")


def _matcher_spans(norm: str, s: int, e: int, region: str) -> Iterator[tuple[int, int, object]]:
    """What ``PhoneNumberMatcher(norm[s:e + 24], region, leniency=POSSIBLE)`` finds, as spans in ``norm``.

    The matcher costs 50-200 microseconds a window (it tries every sub-group of a number that
    fails); when no digit follows the run within the window and the run is a plain one, its first
    step is ``parse`` of the whole run, and a possible number there is its one and only match. That
    step is taken here directly; anything else goes to the matcher.
    """
    text = norm[s:e]
    if (not _ANY_DIGIT.search(norm, e, e + 24) and sum(ch.isdigit() for ch in text) <= 17
            and _PLAIN_RUN.fullmatch(text)):
        try:
            number = phonenumbers.parse(text, region, keep_raw_input=True)
        except phonenumbers.NumberParseException:
            number = None
        if number is not None and phonenumbers.is_possible_number(number):
            # As the matcher returns it: without what keep_raw_input recorded.
            number.country_code_source = phonenumbers.CountryCodeSource.UNSPECIFIED
            number.raw_input = None
            number.preferred_domestic_carrier_code = None
            yield s, e, number
            return
    for p in PhoneNumberMatcher(norm[s:e + 24], region, leniency=Leniency.POSSIBLE):
        yield s + p.start, s + p.end, p.number


def _other_region_phones(norm: str, taken: _Spans, region: str) -> list[tuple[int, int, str]]:
    """National formats of other regions (020 7946 0958) and 00-prefixed international numbers.

    Run before the default region's matcher, which spends 200 microseconds failing on each such
    number (it tries every group of a number it cannot parse whole), for the runs the matcher would
    see alone: no '(' before (the matcher keeps it), no digit within the three separators a digit
    run may hold before it, none in the 24-character window after it (an extension, a second
    number). The others are returned, for :func:`_other_region_phone` after the matcher.
    """
    later = []
    for m in _matches_after(_PHONE_RUN, norm, lambda c: (c.isascii() and c.isalnum()) or c in "_-+/.:"):
        s, e = m.start(), m.end()
        text = m.group(0)
        if not 9 <= sum(ch.isdigit() for ch in text) <= 17 or taken.overlaps(s, e) or not _start_ok(norm, s):
            continue
        if norm[s - 1:s] == "(" or _ANY_DIGIT.search(norm, max(0, s - 4), s) or _ANY_DIGIT.search(norm, e, e + 24):
            later.append((s, e, text))
        else:
            _other_region_phone(norm, taken, region, s, e, text)
    return later


def _other_region_phone(norm: str, taken: _Spans, region: str, s: int, e: int, text: str) -> None:
    regions = [r for r in _fallback_regions() if r != region]
    for cand, reg in [("+" + text[2:], None)] if text.startswith("00") else [(text, r) for r in regions]:
        try:
            number = phonenumbers.parse(cand, reg)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number) and _phone_ok(norm, s, e, number, fmt_min_digits=99, valid=True):
            taken.add(s, e, PHONE_TOKEN)
            return


def _phones(norm: str, taken: _Spans, region: str) -> None:
    later = _other_region_phones(norm, taken, region)
    # libphonenumber's matcher costs a fifth of a millisecond a call: run it only on windows around
    # digit runs that could be phones (7-24 digits, not after 'order', not inside a code or a date).
    for m in _NUM_RUN.finditer(norm):
        s, e = m.start(), m.end()
        if s and norm[s - 1] in "+(":
            s -= 1
        text = norm[s:e]
        n_digits = sum(ch.isdigit() for ch in text)
        if e - s < 7 or not 7 <= n_digits <= 24 or taken.overlaps(s, e):
            continue
        if not _start_ok(norm, s) or _PRICES.fullmatch(text) or _AMOUNT.fullmatch(text) or (not text.startswith("+") and not _end_ok(norm, e)):
            continue
        # The window's tail leaves room for an extension ('ext. 12', 'x204').
        for ps, pe, number in _matcher_spans(norm, s, e, region):
            if not taken.overlaps(ps, pe) and _phone_ok(norm, ps, pe, number, edges_ok=(ps, pe) == (s, e)):
                taken.add(ps, pe, PHONE_TOKEN)
    for s, e, text in later:
        if not taken.overlaps(s, e):
            _other_region_phone(norm, taken, region, s, e, text)


_CURRENCY = frozenset("$€£¥₹₩₽¢")
_AMOUNT = re.compile(r"[0-9]+\.[0-9]{2}")  # 110000.00
_PRICES = re.compile(r"[0-9]{1,6}\.[0-9]{2}(?: +[0-9]{1,6}\.[0-9]{2})+")
_NUM_RUN = re.compile(r"[0-9](?:[ .\-/()]{0,3}[0-9])*")
_PHONE_RUN = re.compile(r"0[0-9]*(?:[ .\-/]{1,2}\(?[0-9]+\)?)*[0-9]")


# ---------------------------------------------------------------------------------------------
# Street addresses (raw text).

_DIRECTION = r"(?:[NSEW]|NE|NW|SE|SW|North|South|East|West)\.?"
_NAME_WORD = r"(?:[A-Z][\w'\-]*\.?|[0-9]+(?:st|nd|rd|th)|" + _DIRECTION + ")"
_ABBREV = "st|str|ave|av|rd|blvd|dr|ln|ct|pl|ter|cir|pkwy|hwy|sq|trl|plz|cres|gdns|aly|expy|fwy"
_ADDRESS = re.compile(
    r"(?P<num>[0-9]{1,6}[A-Za-z]?)[ \t]+(?:"
    # 742 Evergreen Terrace, 500 W 2nd St, 88 Colin P Kelly Jr St
    r"(?:" + _NAME_WORD + r"[ \t]+){1,4}(?i:" + _STREET_TYPES + r")\b\.?(?:[ \t]+(?:N|S|E|W|NE|NW|SE|SW)\b)?"
    # 123 main st (lower case only with an abbreviated street type)
    r"|(?:[a-z][a-z'\-]*[ \t]+){1,3}(?:" + _ABBREV + r")\b\.?"
    # 1515 Broadway: a street whose name is its type
    r"|Broadway\b"
    # 16 Rue de la Paix, 1 Avenue des Champs
    r"|(?i:rue|avenue|boulevard|calle|via|avenida|place)[ \t]+(?:(?:de|du|des|la|le|del|di|da|dos)[ \t]+){0,2}[A-Z][\w'\-]*"
    r")"
)
_ADDRESS_PARTS = frozenset(
    "AddressNumber StreetNamePreDirectional StreetNamePreModifier StreetNamePreType StreetName "
    "StreetNamePostType StreetNamePostDirectional".split()
)


# An address-shaped phrase is an address when something around it says so: a cue before it
# ('ship to', 'I live at', 'address:') or a tail after it (', Springfield', ', Apt 4B', 'IL 62704').
# Without one, title-cased phrases such as 'Top 10 Best Place' or 'gave it 5 Stars Way' would go.
_ADDRESS_CUES = frozenset(
    "at to from address addr adress live lives living located location ship shipped shipping deliver delivered "
    "delivery send sent moved is be on near opposite".split()
)
_ADDRESS_TAIL = re.compile(
    r"[ \t]*,[ \t]*[A-Z]|[ \t,]+(?i:apt|apartment|suite|ste|unit|floor|fl)\b|[ \t]*#[ \t]*[0-9]"
    r"|,?[ \t]+[A-Z]{2},?[ \t]+[0-9]{5}\b"
)
_ASCII_WORDS = re.compile(r"[A-Za-z]+")


def _address_context(raw: str, start: int, end: int) -> bool:
    words = _ASCII_WORDS.findall(raw[max(0, start - 30):start])
    if any(w.lower() in _ADDRESS_CUES for w in words[-2:]):
        return True
    return _ADDRESS_TAIL.match(raw, end) is not None


def _addresses(raw: str, spans: list) -> None:
    for m in _matches_after(_ADDRESS, raw, lambda c: c.isalnum() or c in "_-/.$€£#,"):
        if not _address_context(raw, m.start(), m.end()):
            continue
        try:
            tags = usaddress.parse(m.group(0))
        except Exception:  # noqa: BLE001 - the tagger's own errors on odd input: not an address
            continue
        labels = [label for _, label in tags]
        # The tagger confirms the shape: a number, a name, a street type, and nothing else.
        typed = "StreetNamePostType" in labels or "StreetNamePreType" in labels or m.group(0).endswith("Broadway")
        if labels and labels[0] == "AddressNumber" and "StreetName" in labels and set(labels) <= _ADDRESS_PARTS and typed:
            end = m.end()
            # 'St.' keeps its dot; 'Street.' ends a sentence.
            if m.group(0).endswith(".") and len(m.group(0).rsplit(None, 1)[-1]) > 5:
                end -= 1
            spans.append((m.start(), end, ADDRESS_TOKEN))


# ---------------------------------------------------------------------------------------------

def _fallback_regions() -> tuple[str, ...]:
    env = os.environ.get("INSIGHTROI_PHONE_FALLBACK")
    return tuple(r.strip().upper() for r in env.split(",") if r.strip()) if env is not None else FALLBACK_REGIONS


def _region(region: str | None) -> str:
    return (region or os.environ.get("INSIGHTROI_PHONE_REGION") or "US").upper()


def _spans(text: str, region: str, gates: int = _G_ALL) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, token) of every detection, earlier detectors first.

    ``gates``: the detectors to run (bits of :data:`_GATES`; the others cannot match this text).
    """
    norm = _fold(text)
    found: list[tuple[int, int, str]] = []
    if gates & _G_SECRET:
        _secrets(text, found)
    if gates & _G_EMAIL:
        _emails(norm, text, found)
    if gates & _G_IBAN:
        _ibans(norm, text, found)
    digit_run = gates & _G_DIGITS and _DIGIT_RUN.search(norm)
    if digit_run:
        _cards(norm, found)
    out = _Spans()
    for s, e, tok in found:
        if not out.overlaps(s, e):
            out.add(s, e, tok)
    if digit_run:
        _phones(norm, out, region)
    if gates & _G_ADDRESS:
        addresses: list[tuple[int, int, str]] = []
        _addresses(text, addresses)
        for s, e, tok in addresses:
            if not out.overlaps(s, e):
                out.add(s, e, tok)
    return out.items


class _Spans:
    """Non-overlapping spans kept sorted, so a text with thousands of matches stays linear-ish."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.items: list[tuple[int, int, str]] = []

    def overlaps(self, s: int, e: int) -> bool:
        i = bisect.bisect_right(self.starts, s)
        return (i > 0 and self.items[i - 1][1] > s) or (i < len(self.items) and self.items[i][0] < e)

    def add(self, s: int, e: int, tok: str) -> None:
        i = bisect.bisect_right(self.starts, s)
        self.starts.insert(i, s)
        self.items.insert(i, (s, e, tok))


def redact_pii(text: str | None, *, region: str | None = None) -> str | None:
    """Replace e-mails, phones, cards, IBANs, street addresses and secrets in ``text`` with tokens.

    Parameters
    ----------
    text : str or None
        Free text (a review, a ticket, a return reason, an event note). ``None`` is returned unchanged.
    region : str, optional
        ISO 3166 region for phone numbers written without a country code (``US``: ``(415) 555-2671``);
        default ``INSIGHTROI_PHONE_REGION`` or US.

    Returns
    -------
    str or None
        The text with ``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[IBAN]``, ``[ADDRESS]`` and ``[SECRET]``
        in place of what they replace; every other character is preserved exactly, so taxonomies
        can be re-run on the stored text.

    Notes
    -----
    Cards are 13-19 digits, grouped by any of space, dot or dash, whose length fits the issuer
    prefix and that pass the Luhn check (ISO/IEC 7812-1), so order numbers and tracking codes that
    fail it are kept. Phones are what ``phonenumbers`` finds for ``region``: a number of 10+ digits
    written with separators, ``+`` or ``(`` when its length is possible, a shorter one or a bare
    digit run only when the number is valid (assigned area code), and never after a word such as
    "order", "invoice" or "tracking", inside a longer digit run, or glued to a date or a time;
    national numbers of :data:`FALLBACK_REGIONS` (``INSIGHTROI_PHONE_FALLBACK``) must be valid
    there. IBANs must pass schwifty's country-length, structure and mod-97 checks. Only the value
    of a secret-named URL parameter is replaced (``?token=[SECRET]``).
    """
    if text is None or not _prefilter(text):
        return text
    return redact_matched(text, region=region)


def redact_matched(text: str, *, region: str | None = None) -> str:
    """:func:`redact_pii` for a text that already passed :data:`PREFILTER` (vectorised callers)."""
    return _redact(text, _region(region), _G_ALL)


def _redact(text: str, region: str, gates: int) -> str:
    spans = _spans(text, region, gates)
    if not spans:
        return text
    out, pos = [], 0
    for s, e, tok in spans:
        out += [text[pos:s], tok]
        pos = e
    out.append(text[pos:])
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Keyed pseudonyms for id columns.

_KEYS: dict[str, bytes] = {}


def _key_path() -> Path:
    explicit = os.environ.get("INSIGHTROI_PII_KEY_FILE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "insightroi" / "pii.key"


def _pii_key() -> bytes:
    """The pseudonym key: ``INSIGHTROI_PII_KEY``, else a key file created (mode 0600) on first use.

    The key lives outside the store, so a copy of the store alone cannot be used to test guesses
    ("is pii_... jane@example.com?").
    """
    env = os.environ.get("INSIGHTROI_PII_KEY")
    if env:
        if len(env) < 16:
            raise ValueError("INSIGHTROI_PII_KEY must be at least 16 characters")
        return env.encode()
    path = _key_path()
    cached = _KEYS.get(str(path))
    if cached:
        return cached
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        try:
            # link() fails if another process created the key first; then both use that one.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_text().strip().encode()
    if len(key) < 16:
        raise ValueError(f"PII key file {path} holds fewer than 16 characters; delete it to create a new one")
    _KEYS[str(path)] = key
    return key


def _canonical(value: str, region: str) -> str:
    v = unicodedata.normalize("NFKC", value).strip()
    whole = redact_matched(v, region=region)
    if whole == PHONE_TOKEN:
        try:
            return phonenumbers.format_number(phonenumbers.parse(_fold(v), region), phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            return v
    if "@" in v or whole == EMAIL_TOKEN:
        return v.lower()
    return v


def pseudonymize(value: str, *, region: str | None = None) -> str:
    """The keyed pseudonym of an id that carries PII: ``pii_`` + 32 hex digits of HMAC-SHA256.

    Parameters
    ----------
    value : str
        The id (an e-mail, a phone number, ...). E-mails are compared case-insensitively and phones
        by their E.164 form, so ``Jane.Doe@Example.com`` and ``jane.doe@example.com``, or
        ``(415) 555-2671`` and ``+14155552671``, get the same pseudonym and still join.
    region : str, optional
        Phone region as for :func:`redact_pii`.

    Returns
    -------
    str
        Deterministic for a given key (``INSIGHTROI_PII_KEY``, else the key file at
        ``INSIGHTROI_PII_KEY_FILE`` or ``~/.config/insightroi/pii.key``, created 0600 on first use).
    """
    canon = _canonical(value, _region(region))
    digest = hmac.new(_pii_key(), canon.encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:32]


def _pseudonymize_ids(values: list[str | None], region: str) -> list[str | None]:
    # Ids repeat (one customer, many orders): each distinct value is checked once.
    done: dict[str, str] = {}
    out = []
    for v in values:
        if v is not None and not v.startswith(PSEUDONYM_PREFIX):
            if v not in done:
                done[v] = pseudonymize(v, region=region) if redact_matched(v, region=region) != v else v
            v = done[v]
        out.append(v)
    return out


def redact_row(row: dict, kind: str, *, region: str | None = None) -> dict:
    """:func:`redact_table` for one record (an event posted to the server), as a new dict.

    Parameters
    ----------
    row : dict
        Column name -> value for table ``kind``; values that are not strings are kept as they are.
    kind : str
        The target table (its ``REDACT_COLUMNS`` are redacted, its :data:`ID_COLUMNS` pseudonymised
        when they carry PII).
    region : str, optional
        Phone region as for :func:`redact_pii`.

    Returns
    -------
    dict
        The row with the same redaction ingestion applies.
    """
    reg = _region(region)
    out = dict(row)
    for col in REDACT_COLUMNS.get(kind, ()):
        if isinstance(out.get(col), str):
            out[col] = redact_pii(out[col], region=reg)
    for col in ID_COLUMNS.get(kind, ()):
        if isinstance(out.get(col), str) and _id_prefilter(out[col]):
            out[col] = _pseudonymize_ids([out[col]], reg)[0]
    return out


def redact_raw(raw: str, id_columns: tuple[str, ...] | list[str], *, region: str | None = None) -> str:
    """Redact a quarantined row's raw form: its ids pseudonymised as landed rows' are, all else redacted.

    Parameters
    ----------
    raw : str
        The quarantine's ``raw``: a JSON object of the row's values, or ``{"line": ...}`` for a
        line that could not be parsed into fields.
    id_columns : sequence of str
        The target table's id columns (:data:`ID_COLUMNS`, or a user table's ``id_columns``).
    region : str, optional
        Phone region as for :func:`redact_pii`.

    Returns
    -------
    str
        A parsed row keeps its shape: an id carrying PII becomes its :func:`pseudonymize`
        pseudonym, so the row still joins to its customer when retried and an erasure of that
        customer finds it; every other text value is redacted with :func:`redact_pii`. Anything
        else is redacted as one text.
    """
    try:
        row = json.loads(raw)
    except ValueError:
        row = None
    if not isinstance(row, dict) or set(row) == {"line"}:
        return redact_pii(raw, region=region)
    reg = _region(region)
    out = {}
    for col, value in row.items():
        if not isinstance(value, str):
            out[col] = value
        elif col in id_columns:
            out[col] = _pseudonymize_ids([value], reg)[0] if _id_prefilter(value) else value
        else:
            out[col] = redact_pii(value, region=reg)
    return json.dumps(out, ensure_ascii=False)


def _redact_column(picked: pa.Array, region: str) -> pa.Array:
    # Each distinct text of a chunk once (feedback repeats itself: templated messages, 'N/A', one
    # complaint pasted twice), with only the detectors its pre-filter branches call for.
    distinct = pc.unique(picked)
    gates = [0] * len(distinct)
    for bit, pattern in _GATES:
        for i, hit in enumerate(pc.match_substring_regex(distinct, pattern).to_pylist()):
            if hit:
                gates[i] |= bit
    done = pa.array(_redact_items(list(zip(distinct.to_pylist(), gates)), region), pa.string())
    return done.take(pc.index_in(picked, value_set=distinct))


#: Distinct candidate texts in one chunk from which a share goes to worker processes (Linux, two or
#: more cores; ``INSIGHTROI_REDACT_WORKERS`` sets how many, 0 for none). Below it the fork and the
#: transfer cost more than they save.
_POOL_MIN_TEXTS = 5_000
_POOL: dict = {"pool": None, "off": False, "workers": 0}
_WORKER_START_S = 30.0  # what a worker may take beyond its share's work before it counts as hung


def _redact_batch(items: list[tuple[str, int]], region: str, fallback_env: str | None = None,
                  in_worker: bool = False) -> list[str]:
    if in_worker:
        # A forked worker keeps the environment of its fork; the caller's fallback regions rule.
        if fallback_env is None:
            os.environ.pop("INSIGHTROI_PHONE_FALLBACK", None)
        else:
            os.environ["INSIGHTROI_PHONE_FALLBACK"] = fallback_env
    return [_redact(t, region, g) for t, g in items]


def _worker_pool() -> ProcessPoolExecutor | None:
    if _POOL["pool"] is not None or _POOL["off"]:
        return _POOL["pool"]
    env = os.environ.get("INSIGHTROI_REDACT_WORKERS")
    workers = int(env) if env is not None and env.strip().isdigit() else (1 if (os.cpu_count() or 1) >= 2 else 0)
    # fork: a worker starts at once with the detectors loaded (a fresh interpreter spends seconds
    # importing them); it runs only the pure-Python detectors, never DuckDB or Arrow.
    if workers <= 0 or not sys.platform.startswith("linux"):
        _POOL["off"] = True
        return None
    _POOL["pool"] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    _POOL["workers"] = workers
    return _POOL["pool"]


def _redact_items(items: list[tuple[str, int]], region: str) -> list[str]:
    """Redact (text, gates) pairs; a large chunk is shared with worker processes.

    Redaction is pure Python and holds one core; on two cores, a worker that takes a bit under
    half of a large chunk (it also pays for the transfer) cuts the chunk's time by two fifths
    (1.4 -> 0.85 s for the 17,000 distinct candidates of a 262,144-row chunk of bench_ingest).
    A worker that fails (killed, out of memory) costs nothing but time: its share is redone here
    and no pool is used again.
    """
    pool = _worker_pool() if len(items) >= _POOL_MIN_TEXTS else None
    if pool is None:
        return _redact_batch(items, region)
    n_parts = _POOL["workers"] + 1
    share = len(items) * 9 // 20 if n_parts == 2 else len(items) // n_parts
    bounds = [i * share for i in range(n_parts)]
    fallback_env = os.environ.get("INSIGHTROI_PHONE_FALLBACK")
    parts = [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    # The first submit forks the worker. Frozen, the objects it inherits are never collected
    # there: a store in a reference cycle would otherwise be closed by the worker's collector.
    gc.freeze()
    try:
        futures = [pool.submit(_redact_batch, part, region, fallback_env, True) for part in parts]
    finally:
        gc.unfreeze()
    mine = _redact_batch(items[bounds[-1]:], region)
    out: list[str] = []
    for part, fut in zip(parts, futures):
        try:
            # A forked child of a process with other threads can, rarely, block on a lock one of
            # them held at the fork; a share takes ~0.1 ms a text, so 2 ms a text (plus start-up)
            # means it never will answer: its share is redone here, and the child is killed so
            # the pool's exit handler does not wait for it.
            out += fut.result(timeout=_WORKER_START_S + 0.002 * len(part))
        except Exception:  # noqa: BLE001 - any worker failure or timeout: redo its share here
            _POOL["off"], _POOL["pool"] = True, None
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()
            pool.shutdown(wait=False, cancel_futures=True)
            out += _redact_batch(part, region)
    return out + mine


def redact_table(table: pa.Table, kind: str, *, region: str | None = None) -> pa.Table:
    """Redact one chunk of validated rows bound for table ``kind``.

    Parameters
    ----------
    table : pyarrow.Table
        Validated rows (the columns of ``kind``'s spec, plus ingestion's own).
    kind : str
        The target table; its free-text columns are ``REDACT_COLUMNS[kind]``, its id columns
        :data:`ID_COLUMNS` ``[kind]``.
    region : str, optional
        Phone region as for :func:`redact_pii`.

    Returns
    -------
    pyarrow.Table
        The same rows with PII replaced by tokens in the free-text columns, and id values that
        carry PII replaced by their :func:`pseudonymize` pseudonym (deterministic, so joins across
        tables still match). Only rows that pass :data:`PREFILTER` (vectorised) reach Python.
    """
    reg = _region(region)
    for cols, fix, gate in ((REDACT_COLUMNS.get(kind, ()), None, PREFILTER),
                            (ID_COLUMNS.get(kind, ()), _pseudonymize_ids, ID_PREFILTER)):
        for col in cols:
            if col not in table.column_names:
                continue
            values = table.column(col).combine_chunks().cast(pa.string())
            mask = pc.fill_null(pc.match_substring_regex(values, gate), False)
            if not pc.any(mask).as_py():
                continue
            picked = values.filter(mask)
            new = pa.array(fix(picked.to_pylist(), reg), pa.string()) if fix else _redact_column(picked, reg)
            table = table.set_column(table.column_names.index(col), col, pc.replace_with_mask(values, mask, new))
    return table
