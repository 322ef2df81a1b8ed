"""The user tables the CX-measure tests share (issue 22): their ``[[tables]]`` declarations, the
two-month customer experiment they are analysed in, and the store they are written to.

tests/metrics (user measures, quantile measures, time to event, the CX coverage study) declared
the same ``surveys`` and ``cases`` tables, shortened the starter's experiment the same way and
created the same DuckDB tables by hand; a change to one copy (a column, the window) silently left
the others behind. Each test still builds its own rows: only the declarations and plumbing are here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from insightroi.program import Program, parse_program, starter_program_text

__all__ = [
    "CASES_TABLE", "CASE_COLUMNS", "CUSTOMER_AB", "CUSTOMER_COLUMNS", "STARTER_DESIGN", "SURVEYS_TABLE",
    "SURVEY_COLUMNS", "assign_units", "create_user_table", "table_toml", "two_month_program",
]

SURVEY_COLUMNS = {"id": "string", "customer_id": "string", "answered_at": "timestamp", "nps": "int64"}
CASE_COLUMNS = {"id": "string", "customer_id": "string", "opened_at": "timestamp", "resolved_at": "timestamp"}
CUSTOMER_COLUMNS = {"customer_id": "string", "signed_up_at": "timestamp", "churned_at": "timestamp"}

STARTER_DESIGN = 'design = "cluster"\nunit = "sku_family"'
CUSTOMER_AB = 'design = "ab"\nunit = "customer"'

_SQL_TYPES = {"string": "VARCHAR", "int64": "BIGINT", "float64": "DOUBLE", "boolean": "BOOLEAN",
              "date": "DATE", "timestamp": "TIMESTAMP"}


def table_toml(name: str, columns: Mapping[str, str], *, time_column: str, key: str = "id",
               id_columns: Sequence[str] = ()) -> str:
    """A ``[[tables]]`` entry declaring ``user_<name>`` with ``columns`` (name -> type), in order.

    Parameters
    ----------
    name : str
    columns : mapping of str to str
        Column -> type, as the program file writes them (``string``, ``int64``, ``timestamp`` ...).
    time_column, key : str
    id_columns : sequence of str
        Columns holding a person's id (left out of the entry when empty).

    Returns
    -------
    str
        TOML text, starting with a blank line so it can be appended to a program.
    """
    cols = ", ".join(f'{c} = "{t}"' for c, t in columns.items())
    lines = ["", "[[tables]]", f'name = "{name}"', f"columns = {{ {cols} }}", f'key = "{key}"',
             f'time_column = "{time_column}"']
    if id_columns:
        lines.append("id_columns = [" + ", ".join(f'"{c}"' for c in id_columns) + "]")
    return "\n".join(lines) + "\n"


SURVEYS_TABLE = table_toml("surveys", SURVEY_COLUMNS, time_column="answered_at")
CASES_TABLE = table_toml("cases", CASE_COLUMNS, time_column="opened_at")


def two_month_program(extra: str = "", *, design: str | None = None, name: str | None = None,
                      **replace: str) -> Program:
    """The starter program with its experiment cut to 2025-07-01 .. 2025-08-31 (30-day pre-period), plus ``extra``.

    Parameters
    ----------
    extra : str
        Program text appended (tables, measures, KPIs).
    design : str, optional
        Replaces the starter's two lines ``design = "cluster"`` / ``unit = "sku_family"``
        (``CUSTOMER_AB``: an A/B test on customers).
    name : str, optional
        The experiment's name (default the starter's ``theme-alerts-2025``).
    **replace : str
        Further ``old=new`` replacements in the starter's text; each ``old`` must be there.
    """
    edits = {"end = 2026-03-31": "end = 2025-08-31", "pre_period_days = 90": "pre_period_days = 30"}
    if design is not None:
        edits[STARTER_DESIGN] = design
    if name is not None:
        edits['name = "theme-alerts-2025"'] = f'name = "{name}"'
    text = starter_program_text()
    for old, new in {**edits, **replace}.items():
        assert old in text, old
        text = text.replace(old, new)
    return parse_program(text + extra)


def create_user_table(st, name: str, columns: Mapping[str, str], rows: pd.DataFrame | None = None) -> None:
    """Create ``user_<name>`` with the declared ``columns`` in a DuckDB store and append ``rows``.

    The tests write their rows directly (no ingestion), as a table read in place would be.
    """
    st.sql(f"CREATE TABLE user_{name} (" + ", ".join(f"{c} {_SQL_TYPES[t]}" for c, t in columns.items()) + ")")
    if rows is not None:
        st.append(f"user_{name}", rows)


def assign_units(st, experiment: str, ids: Sequence[str] | np.ndarray, arm: Sequence[str] | np.ndarray,
                 assigned_at: datetime, *, unit_type: str = "customer") -> None:
    """Append one assignment per unit (ids ``a0``, ``a1`` ...) of ``experiment`` to the store."""
    st.append("assignments", pd.DataFrame({"id": [f"a{i}" for i in range(len(ids))], "experiment": experiment,
                                           "unit_type": unit_type, "unit_id": ids, "arm": arm,
                                           "assigned_at": assigned_at}))
