"""The redactor's shortcuts: each still catches the PII the slow path catches.

* a plain digit run with no digit after it is parsed directly instead of by libphonenumber's
  matcher (``_matcher_spans``), which must find exactly what the matcher finds;
* national numbers of other regions are tried before the default region's matcher when the
  matcher would see them alone (no '(' before, no digit near either side);
* the spaced e-mail scan runs only for an '@' the plain form left;
* ``redact_table`` redacts each distinct text of a chunk once, and runs only the detectors whose
  pre-filter branch (RE2, vectorised) matches the text;
* a large chunk is shared with a forked worker process, which must redact as this one does.
"""

from __future__ import annotations

import sys
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import phonenumbers
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import Leniency, PhoneNumberMatcher

from insightroi.ingest import _redact as R
from insightroi.ingest import redact_pii, redact_table
from insightroi.ingest._redact import _GATES, _NUM_RUN, _matcher_spans


def _matcher(norm: str, s: int, e: int, region: str) -> list[tuple[int, int, phonenumbers.PhoneNumber]]:
    return [(s + p.start, s + p.end, p.number)
            for p in PhoneNumberMatcher(norm[s:e + 24], region, leniency=Leniency.POSSIBLE)]


def _runs(text: str) -> list[tuple[int, int]]:
    out = []
    for m in _NUM_RUN.finditer(text):
        s = m.start() - 1 if m.start() and text[m.start() - 1] in "+(" else m.start()
        out.append((s, m.end()))
    return out


def test_direct_parse_finds_what_the_matcher_finds_for_every_regions_numbers():
    # libphonenumber's example numbers of every region in every format, alone and with text,
    # an extension or a second number after them: the shortcut's spans and numbers are the
    # matcher's, whichever of the two paths a run takes.
    fmt = phonenumbers.PhoneNumberFormat
    kinds = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
    n_direct = n_runs = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in kinds:
            ex = phonenumbers.example_number_for_type(region, kind)
            if ex is None:
                continue
            for f in (fmt.INTERNATIONAL, fmt.NATIONAL, fmt.E164):
                number = phonenumbers.format_number(ex, f)
                for text in (f"call {number}.", f"call {number} ext. 12", f"({number}) or 415-555-2671"):
                    for s, e in _runs(text):
                        for reg in ("US", region):
                            got = list(_matcher_spans(text, s, e, reg))
                            assert got == _matcher(text, s, e, reg), (text, reg)
                            n_runs += 1
                            n_direct += not any(ch.isdigit() for ch in text[e:e + 24])
    # Runs the shortcut must leave to the matcher: slashes (dates, '030/...', a second number),
    # brackets not around an area code, publication pages.
    for text in ("call 030/1234567.", "+44 (0)20 7946 0958 now", "pages 211-227 (2003) cited", "on 12/05/2025 only",
                 "(415) 555-2671/2672", "call 555) 123-4567 ok", "dial 1 (800) 555 0199", "+1 (415 555 2671"):
        for s, e in _runs(text):
            for reg in ("US", "GB", "DE"):
                assert list(_matcher_spans(text, s, e, reg)) == _matcher(text, s, e, reg), (text, reg)
    assert n_runs > 3000 and n_direct > 1000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # direct parse: formatted, bracketed, international, bare digits
        ("Call me on +1 (555) 010-1234.", "Call me on [PHONE]."),
        ("my cell (212) 555-0187", "my cell [PHONE]"),
        ("call 4155552671", "call [PHONE]"),
        ("uk +44 20 7946 0958 thanks", "uk [PHONE] thanks"),
        # the matcher: an extension after the number stays part of it
        ("call 415-555-2671 ext. 12 after six", "call [PHONE] after six"),
        ("call 415-555-2671 x204", "call [PHONE]"),
        # other regions first: alone, next to a US number, after a bracket, with an extension
        ("My number is 020 7946 1234.", "My number is [PHONE]."),
        ("de 0151 12345678 or 415-555-2671", "de [PHONE] or [PHONE]"),
        ("(020 7946 0958 any time", "([PHONE] any time"),
        ("london 020 7946 0958 ext. 12", "london [PHONE] ext. 12"),
        # look-alikes the shortcuts must leave: order numbers, dates, prices
        ("Order 123456789 still open.", "Order 123456789 still open."),
        ("order 0207946095 is late", "order 0207946095 is late"),
        ("on 2025-01-15 10:30 paid 12.50 99.99", "on 2025-01-15 10:30 paid 12.50 99.99"),
    ],
)
def test_phone_shortcuts_catch_what_the_matcher_caught(text, expected):
    assert redact_pii(text) == expected
    assert redact_pii(text, region="US") == expected


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        # a digit run that starts before the trunk-0 part: the default region's matcher sees it whole
        ("x 93694 - 081-869- 1234", "DE", "x [PHONE]"),
        ("ph 04150 - 071 36869-0/22", "DE", "ph [PHONE]"),
        # a digit after the number: the matcher keeps the extension in the span
        ("call 07924 123456 x204", "GB", "call [PHONE]"),
    ],
)
def test_other_region_numbers_go_first_only_when_the_matcher_would_see_them_alone(text, region, expected):
    assert redact_pii(text, region=region) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane @ example . com please", "write to [EMAIL] please"),
        ("write to jane@example . com please", "write to [EMAIL] please"),
        # one '@' the plain form takes, one it leaves: the spaced scan still runs for the second
        ("a@b.com or JANE @ EXAMPLE . COM", "[EMAIL] or [EMAIL]"),
        ("Bit disappointed with @anonymous. No one replied", "Bit disappointed with @anonymous. No one replied"),
    ],
)
def test_spaced_email_scan_runs_for_every_at_the_plain_form_left(text, expected):
    assert redact_pii(text) == expected


def _table(texts: list[str | None]) -> pa.Table:
    return pa.table({"id": [str(i) for i in range(len(texts))], "text": pa.array(texts, pa.string())})


def test_each_gate_lets_its_detector_run():
    # One text per detector, where only that detector's pre-filter branch matches, repeated so
    # the chunk holds duplicates: the vectorised path redacts each as redact_pii does.
    texts = [
        "https://x.example/reset?token=a8f3c91e0b7d4e2f",
        "email me at jane.doe@example.com",
        "jane dot doe at example dot com",
        "IBAN DE89 3704 0044 0532 0130 00",
        "card 4111 1111 1111 1111",
        "call 415-555-2671",
        "ship to 456 Oak Avenue, Springfield",
        "Order 123456789 still open.",
        None,
    ]
    expected = [redact_pii(t) for t in texts]
    assert expected[:7] == [
        "https://x.example/reset?token=[SECRET]", "email me at [EMAIL]", "[EMAIL]", "IBAN [IBAN]", "card [CARD]",
        "call [PHONE]", "ship to [ADDRESS], Springfield",
    ]
    out = redact_table(_table(texts * 3), "feedback").column("text").to_pylist()
    assert out == expected * 3
    assert len(_GATES) == 5


_ALPHABET = st.sampled_from(
    list("0123456789 -.()+@abxyz:#=/,") + ["4111", "555", ".com", "４", "\u2013", "＠", " at ", " dot ", "[at]",
                                           "token", "?key=", "DE89", "GB82", " St", " Avenue", "Oak ", "Bearer ",
                                           "eyJ", "0151 ", "020 7946 ", "00", "+44", "ext. ", "Order "]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_ALPHABET, max_size=30).map("".join), min_size=1, max_size=8))
def test_vectorised_gates_and_dedupe_change_nothing(texts):
    # Gated, de-duplicated redaction of a chunk equals redact_pii of each text with every detector.
    texts = texts + texts[:2]
    assert redact_table(_table(texts), "feedback").column("text").to_pylist() == [redact_pii(t) for t in texts]


@pytest.fixture
def fresh_pool(monkeypatch):
    # A pool of one worker from the first chunk of 50 distinct texts; the module's pool state is
    # restored afterwards.
    monkeypatch.setattr(R, "_POOL_MIN_TEXTS", 50)
    monkeypatch.setenv("INSIGHTROI_REDACT_WORKERS", "1")
    saved = dict(R._POOL)
    R._POOL.update(pool=None, off=False, workers=0)
    yield R._POOL
    if R._POOL["pool"] is not None and R._POOL["pool"] is not saved["pool"]:
        R._POOL["pool"].shutdown()
    R._POOL.clear()
    R._POOL.update(saved)


def _chunk(n: int) -> list[str]:
    # Distinct texts; the UK number (another region's national format) and the e-mail fall in
    # both the worker's share (the first 45%) and this process's.
    return [f"review {i}: call 020 7946 {i % 10000:04d} or mail u{i}@example.com, order 12345{i:04d}" for i in range(n)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the worker pool forks (Linux only)")
def test_worker_pool_redacts_as_redact_pii_with_the_callers_settings(fresh_pool, monkeypatch):
    texts = _chunk(120)
    out = redact_table(_table(texts), "feedback").column("text").to_pylist()
    assert fresh_pool["pool"] is not None and fresh_pool["workers"] == 1
    assert out == [redact_pii(t) for t in texts]
    assert out[0] == "review 0: call [PHONE] or mail [EMAIL], order 123450000"
    # The worker was forked before this setting: the caller's fallback regions still rule there.
    monkeypatch.setenv("INSIGHTROI_PHONE_FALLBACK", "")
    out = redact_table(_table(texts), "feedback").column("text").to_pylist()
    assert out == [redact_pii(t) for t in texts]
    assert all("020 7946" in t for t in out)


class _DeadPool:
    def submit(self, *args, **kwargs):
        fut = Future()
        fut.set_exception(BrokenProcessPool("worker killed"))
        return fut

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def test_a_failed_worker_costs_only_time(fresh_pool):
    fresh_pool.update(pool=_DeadPool(), workers=1)
    texts = _chunk(120)
    assert redact_table(_table(texts), "feedback").column("text").to_pylist() == [redact_pii(t) for t in texts]
    assert fresh_pool["off"] and fresh_pool["pool"] is None


class _Proc:
    killed = False

    def kill(self):
        self.killed = True


class _HungPool:
    def __init__(self):
        self._processes = {1: _Proc()}

    def submit(self, *args, **kwargs):
        return Future()  # never answers, as a child blocked on a lock inherited at the fork

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def test_a_hung_worker_is_killed_and_its_share_redone_here(fresh_pool, monkeypatch):
    monkeypatch.setattr(R, "_WORKER_START_S", 0.05)
    hung = _HungPool()
    fresh_pool.update(pool=hung, workers=1)
    texts = _chunk(120)
    assert redact_table(_table(texts), "feedback").column("text").to_pylist() == [redact_pii(t) for t in texts]
    assert hung._processes[1].killed and fresh_pool["off"] and fresh_pool["pool"] is None
