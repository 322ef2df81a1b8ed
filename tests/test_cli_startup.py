"""Start-up of the ``insightroi`` command: ``import insightroi.cli`` loads no heavy library.

Every command, ``--help`` included, and every CLI subprocess of the end-to-end tests imports
``insightroi.cli`` first; with the stage libraries it took ~2 s. Each stage's CLI imports its
library inside the command that runs, and the packages load their modules on first use
(``insightroi._lazy``). These are behavioural guards, not timings: a module-level import of one
of these modules in any CLI module, ``_cli_common`` or a package ``__init__`` fails them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

#: Modules ``import insightroi.cli`` must not load (each costs from 0.1 to ~1 s).
HEAVY = ("numpy", "pyarrow", "pydantic", "scipy", "sklearn", "pandas", "ibis", "duckdb", "insightroi.services",
         "insightroi.stats", "insightroi.program", "insightroi.store._store", "insightroi.store._schema")

#: ``insightroi --help``'s commands, in its order (the order of the flow).
COMMANDS = (
    "init", "plan", "status", "ingest", "schema", "classify", "detect", "themes", "validate-model", "review",
    "deliver", "trace", "chain", "analyze", "assign", "geo-design", "validate-claim", "roi", "monitor", "report",
    "retention", "erase", "serve", "demo", "run",
)


def test_import_cli_loads_no_heavy_module():
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import insightroi.cli, sys; print('\\n'.join(sys.modules))"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    # -X importtime writes "import time: self | cumulative | module" per import statement; modules
    # that importlib.import_module loads are not in it, so sys.modules (stdout) is checked too.
    timed = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    loaded = timed | set(res.stdout.split())
    assert "insightroi.cli" in loaded
    found = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert not found, f"import insightroi.cli loaded {found}: import them inside the command that needs them"


def test_help_lists_every_command():
    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb"}
    res = subprocess.run([sys.executable, "-m", "insightroi", "--help"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    # A command's row: its name after the panel's border (Rich) or two spaces (plain Click); a
    # wrapped help line has more spaces there, the options a dash.
    listed = re.findall(r"^(?:│ |  )([a-z][a-z-]*) {2,}\S", res.stdout, flags=re.M)
    assert [c for c in listed if c in COMMANDS] == list(COMMANDS), res.stdout
