"""The README's program-file example (user table, measure, KPI, retention) is valid as printed."""

from __future__ import annotations

import re
from pathlib import Path

from insightroi.metrics import measure_specs
from insightroi.privacy import resolve_retention
from insightroi.program import parse_program, starter_program_text
from insightroi.store import user_table_spec

README = Path(__file__).resolve().parents[2] / "README.md"


def _toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_toml_example_parses_compiles_and_resolves():
    blocks = [b for b in _toml_blocks() if "[[measures]]" in b]
    assert len(blocks) == 1
    prog = parse_program(starter_program_text() + "\n" + blocks[0], source="README.md")
    kpi = prog.kpi("mean_resolution_hours")
    assert (kpi.numerator, kpi.denominator) == ("resolution_hours", "resolution_hours_count")
    spec = measure_specs(prog)["resolution_hours"]
    assert (spec.table, spec.time) == ("tickets", "opened_at")
    table = user_table_spec(prog.user_table("surveys"))
    assert table.name == "user_surveys" and table.key == "survey_id" and table.id_columns == ("customer_id",)
    [rule] = resolve_retention(prog)
    assert (rule.table, rule.days, rule.time_column) == ("feedback", 730, "event_time")
