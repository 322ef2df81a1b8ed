"""``[experiment]`` keys of issue 20: covariate selection, per-KPI covariates, the synthetic-control variant."""

from __future__ import annotations

import pytest

from insightroi.errors import ProgramError
from insightroi.program import parse_program, starter_program_text

TEXT = starter_program_text()
SYNTH = TEXT.replace('design = "cluster"', 'design = "synthetic_control"', 1)


def _with(text: str, keys: str, table: str = "") -> str:
    out = text.replace("[experiment]\n", "[experiment]\n" + keys, 1)
    return out.rstrip("\n") + "\n\n" + table if table else out


def test_selection_and_per_kpi_covariates_parse():
    prog = parse_program(_with(TEXT, 'covariates = ["orders"]\nselect_covariates = true\n',
                               '[experiment.covariates_by_kpi]\ntickets_per_1000_orders = ["sessions", "tickets"]\n'))
    assert prog.experiment.select_covariates is True
    assert prog.experiment.covariates_by_kpi == {"tickets_per_1000_orders": ["sessions", "tickets"]}
    assert parse_program(TEXT).experiment.select_covariates is False
    prog = parse_program(_with(SYNTH, 'synth_variant = "augmented"\n'))
    assert prog.experiment.synth_variant == "augmented"
    assert parse_program(SYNTH).experiment.synth_variant is None
    assert parse_program(_with(SYNTH, 'placebo_groups = "matched_fit"\n')).experiment.placebo_groups == "matched_fit"
    assert parse_program(SYNTH).experiment.placebo_groups == "random"


@pytest.mark.parametrize(
    ("keys", "table", "expected"),
    [
        ("select_covariates = true\n", "", "select_covariates = true needs candidates to choose from"),
        ("", '[experiment.covariates_by_kpi]\nnope = ["orders"]\n', "experiment.covariates_by_kpi.nope: 'nope' is not a KPI"),
        ("", '[experiment.covariates_by_kpi]\ntickets_per_1000_orders = ["orders", "ordrs"]\n',
         "experiment.covariates_by_kpi.tickets_per_1000_orders[1]: unknown measure 'ordrs'"),
        ('synth_variant = "augmented"\n', "", "synth_variant applies to design = \"synthetic_control\", not 'cluster'"),
        ('placebo_groups = "matched_fit"\n', "", "placebo_groups applies to design = \"synthetic_control\", not 'cluster'"),
    ],
)
def test_refusals_name_the_key(keys, table, expected):
    with pytest.raises(ProgramError) as info:
        parse_program(_with(TEXT, keys, table), source="insightroi.toml")
    assert expected in str(info.value)


def test_unknown_synth_variant_is_refused_with_its_path():
    with pytest.raises(ProgramError) as info:
        parse_program(_with(SYNTH, 'synth_variant = "ridge"\n'), source="insightroi.toml")
    assert "  experiment.synth_variant: Input should be 'plain', 'demeaned' or 'augmented'" in \
        str(info.value).splitlines()
