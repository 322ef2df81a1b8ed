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
