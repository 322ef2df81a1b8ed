"""Where the tests find the checkout and the shared reference data.

This lives in a helper module, not in ``tests/conftest.py``, because pytest registers every
``conftest.py`` of a folder without ``__init__.py`` under the one module name ``conftest``: a second
conftest (``tests/delivery/conftest.py``) collected first would then answer
``from helpers.paths import ...`` in every other folder.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The human-labelled reference data (sentiment texts, Card & Krueger, CausalImpact outputs, ...)
# lives in shared/ beside the checkout; it is test input only, never shipped in the package.
# INSIGHTROI_SHARED points at another shared/ folder (CI clones main next to it).
REFERENCE_DIR = Path(os.environ.get("INSIGHTROI_SHARED", ROOT.parent / "shared")) / "reference"
