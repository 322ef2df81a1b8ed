"""The program file: the contract every other stage reads, and its refusals naming the key."""

from __future__ import annotations

import pytest

from insightroi.errors import ProgramError, check_option
from insightroi.program import parse_program, starter_program_text


def test_starter_program_is_valid_and_complete():
    prog = parse_program(starter_program_text())
    assert prog.experiment.primary_kpi == "negative_reviews_per_1000_orders"
    assert {k.layer for k in prog.kpis} == {"model", "workflow", "business"}
    assert any(not p.hard for p in prog.value_pools), "the starter shows a soft value pool"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('denominator = "orders"', 'denominator = "orderz"', "kpis[0].denominator: unknown measure 'orderz'"),
        ('layer = "business"', 'layer = "finance"', "kpis[0].layer: Input should be 'model', 'workflow' or 'business'"),
        ('primary_kpi = "negative_reviews_per_1000_orders"', 'primary_kpi = "nope"',
         "experiment: experiment.primary_kpi 'nope' is not a KPI"),
        ('unit_value = { low = 4.0, mode = 6.5, high = 9.0 }', 'unit_value = { low = 9.0, mode = 6.5, high = 4.0 }',
         "value_pools[0].unit_value: need low <= mode <= high"),
        ('timezone = "UTC"', 'timezone = "Mars/Olympus"', "program.timezone: unknown time zone 'Mars/Olympus'"),
        ('horizon_months = 12', 'horizon_months = 12\nsurprise = 1', "program.surprise: Extra inputs are not permitted"),
    ],
)
def test_invalid_program_names_the_key(old, new, expected):
    text = starter_program_text()
    assert old in text
    with pytest.raises(ProgramError) as info:
        parse_program(text.replace(old, new, 1), source="insightroi.toml")
    assert "insightroi.toml: invalid program file" in str(info.value)
    # The cross-reference check is a model-level validator, so pydantic reports it at the top level.
    assert expected.split(": ", 1)[-1] in str(info.value)
    if not expected.startswith("experiment:"):
        assert expected.split(": ", 1)[0] in str(info.value)


def test_bad_toml_is_reported_with_source():
    with pytest.raises(ProgramError, match="x.toml: not valid TOML"):
        parse_program("[program\n", source="x.toml")


def test_check_option_message_follows_sklearn_template():
    with pytest.raises(ValueError, match=r"The 'method' parameter must be one of \['a', 'b'\]. Got 'c' instead."):
        check_option("method", "c", ["a", "b"])


# ---- hardening (issue 16): every refusal names the key path ------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # A negative cost made ROI -490% with a negative cost line and no warning.
        ('amount = { low = 800.0, mode = 1200.0, high = 1800.0 }', 'amount = { low = -800.0, mode = 1200.0, high = 1800.0 }',
         "costs[0].amount.low: Input should be greater than or equal to 0"),
        ('unit_value = { low = 4.0, mode = 6.5, high = 9.0 }', 'unit_value = { low = 4.0, mode = 6.5, high = -9.0 }',
         "value_pools[0].unit_value.high: Input should be greater than or equal to 0"),
        # high = inf passed `plan` and crashed `roi` in np.histogram.
        ('amount = { low = 800.0, mode = 1200.0, high = 1800.0 }', 'amount = { low = 800.0, mode = 1200.0, high = inf }',
         "costs[0].amount.high: Input should be a finite number"),
        ('unit_value = { low = 4.0, mode = 6.5, high = 9.0 }', 'unit_value = { low = nan, mode = 6.5, high = 9.0 }',
         "value_pools[0].unit_value.low: Input should be a finite number"),
        ('amount = { low = 800.0, mode = 1200.0, high = 1800.0 }', 'amount = { low = 800.0, mode = 2000.0, high = 1800.0 }',
         "costs[0].amount: need low <= mode <= high, got 800.0, 2000.0, 1800.0"),
        ("psi_warn = 0.1", "psi_warn = 0.3",
         "monitoring: need psi_warn < psi_alert, got psi_warn = 0.3, psi_alert = 0.25"),
        ('currency = "USD"', 'currency = "XXXX-not-a-currency"',
         "program.currency: 'XXXX-not-a-currency' is not an ISO 4217 currency code (e.g. 'USD', 'EUR', 'GBP')"),
        ('currency = "USD"', 'currency = "usd"',
         "program.currency: 'usd' is not an ISO 4217 currency code (e.g. 'USD', 'EUR', 'GBP'); did you mean 'USD'?"),
        # Numbers as numbers: a quoted number is refused, not converted.
        ("scale = 1000", 'scale = "1000"', "kpis[0].scale: Input should be a valid number"),
        ("retrain_cost = 5000.0", 'retrain_cost = "5000"', "retraining.retrain_cost: Input should be a valid number"),
        ("horizon_days = 90", "horizon_days = 90.5", "retraining.horizon_days: Input should be a valid integer"),
        ("horizon_months = 12", "horizon_months = true", "program.horizon_months: Input should be a valid number"),
        ("earliest = 1990-01-01", "earliest = 2200-01-01",
         "ingest: need earliest < latest, got 2200-01-01 and 2100-12-31"),
        ('on_conflict = "first-wins"', 'on_conflict = "newest"',
         "ingest.on_conflict: Input should be 'first-wins' or 'last-wins'"),
        ('delimiter = ","', 'delimiter = ";;"', "ingest.delimiter: String should have at most 1 character"),
    ],
)
def test_hardened_program_refusals_name_the_key(old, new, expected):
    text = starter_program_text()
    assert old in text
    with pytest.raises(ProgramError) as info:
        parse_program(text.replace(old, new, 1), source="insightroi.toml")
    assert f"  {expected}" in str(info.value).splitlines()


def test_ingest_section_defaults_and_currency_list():
    from datetime import date

    from insightroi.program import CURRENCIES

    prog = parse_program(starter_program_text())
    assert (prog.ingest.earliest, prog.ingest.latest, prog.ingest.on_conflict) == (
        date(1990, 1, 1), date(2100, 12, 31), "first-wins")
    assert {"USD", "EUR", "GBP", "JPY", "CHF"} <= CURRENCIES and "XXXX" not in CURRENCIES and len(CURRENCIES) == 178
    # Whole numbers are numbers: scale = 1000 (an integer in TOML) is accepted as 1000.0.
    assert prog.kpis[0].scale == 1000.0


_USER_TABLE = """
[[tables]]
name = "crm"
columns = { id = "string", phone = "int64", batch_id = "string", seen_at = "timestamp" }
key = "id"
time_column = "seen_at"
"""


@pytest.mark.parametrize(("edit", "expected"), [
    (('batch_id = "string", ', ""), None),
    (('batch_id = "string", ', ""), "tables[0]: id column 'phone' must be a string column, not int64"),
    (("", ""), "tables[0]: table 'crm' declares ['batch_id'], which ingestion sets or uses itself "
               "(ingested_at, batch_id, _rn, _err, _pre_err, rowid); rename them"),
])
def test_user_table_id_columns_are_text_and_reserved_names_are_refused(edit, expected):
    text = _USER_TABLE.replace(*edit) if edit[0] else _USER_TABLE
    if expected is not None and "id column" in expected:
        text += 'id_columns = ["phone"]\n'
    if expected is None:
        assert parse_program(starter_program_text() + text).user_table("crm").columns["phone"] == "int64"
        return
    with pytest.raises(ProgramError) as info:
        parse_program(starter_program_text() + text, source="p.toml")
    assert f"  {expected}" in str(info.value).splitlines(), str(info.value)
