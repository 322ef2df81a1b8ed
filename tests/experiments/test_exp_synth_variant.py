"""``[experiment] synth_variant``: the program, not a rule, picks the synthetic-control variant (issue 20).

The variant rule picks plain or demeaned for the unit-average cross-check; a program that names
a variant gets that one on every KPI, with the key named as the reason, in the analysis and in
``insightroi plan``.
"""

from __future__ import annotations

import pytest

from insightroi.experiments import analyze_quasi_design

from test_exp_quasi_design_analysis import NEG, SC_SEED, _program, _world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    prog = _program("synthetic_control", "region")
    st, _ = _world(tmp_path_factory.mktemp("sv") / "sc.duckdb", prog, n_units=16, treated=[3, 11], rollout_day=[0] * 2,
                   orders_per_day=80, shock=0.02, seed=SC_SEED)
    yield prog, st
    st.close()


def _with_variant(prog, variant):
    return prog.model_copy(update={"experiment": prog.experiment.model_copy(update={"synth_variant": variant})})


@pytest.mark.parametrize(("variant", "estimator"), [("augmented", "ridge"), ("demeaned", "demeaned"),
                                                    ("plain", "plain")])
def test_program_variant_is_the_one_used_and_named(world, variant, estimator):
    prog, st = world
    r = analyze_quasi_design(st, _with_variant(prog, variant), kpis=[NEG], n_placebo_groups=40).results[NEG]
    assert r.extra["synth_variant"] == estimator and r.extra["synth_panel"]["variant"] == estimator
    chk = next(c for c in r.diagnostics if c.name == "synth_panel")
    assert f"({estimator}: experiment.synth_variant = '{variant}')" in chk.message


def test_without_the_key_the_rule_picks_and_says_why(world):
    prog, st = world
    r = analyze_quasi_design(st, prog, kpis=[NEG], n_placebo_groups=40).results[NEG]
    assert r.extra["synth_variant"] in ("plain", "demeaned")
    assert "experiment.synth_variant" not in r.extra["synth_panel"]["variant_reason"]
    assert "mean pre-period gap" in r.extra["synth_panel"]["variant_reason"]


def test_plan_shows_the_variant(tmp_path):
    from typer.testing import CliRunner

    from insightroi.cli import app
    from insightroi.program import starter_program_text

    text = starter_program_text().replace('design = "cluster"', 'design = "synthetic_control"', 1)
    path = tmp_path / "p.toml"
    for extra, expected in (('synth_variant = "augmented"\n', "Synthetic control variant: augmented "
                                                              "(experiment.synth_variant)"),
                            ("", "Synthetic control variant: plain or demeaned, picked by the pre-period fit")):
        path.write_text(text.replace("[experiment]\n", "[experiment]\n" + extra, 1))
        res = CliRunner().invoke(app, ["plan", "--program", str(path), "--store", f"duckdb:///{tmp_path}/none.duckdb"],
                                 env={"COLUMNS": "400"})
        assert res.exit_code == 0, res.output
        assert expected in " ".join(res.output.split())
