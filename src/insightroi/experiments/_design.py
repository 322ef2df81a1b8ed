"""Deterministic assignment: hash the unit id with a salt (and time blocks for switchbacks).

Hashing makes assignment reproducible anywhere (the warehouse, a feature flag service, this
library) without storing a random draw, and independent across experiments with different
salts (the approach of Kohavi, Tang & Xu 2020, ch. 14).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np

from insightroi.errors import DataError

__all__ = ["hash_uniform", "assign", "switchback_schedule"]

_SCALE = float(2**64)


def hash_uniform(unit_ids: Sequence, salt: str) -> np.ndarray:
    """A uniform number in [0, 1) per unit: the first 8 bytes of sha256(``salt:unit_id``)."""
    out = np.empty(len(unit_ids))
    for i, u in enumerate(unit_ids):
        h = hashlib.sha256(f"{salt}:{u}".encode()).digest()
        out[i] = int.from_bytes(h[:8], "big") / _SCALE
    return out


def assign(
    unit_ids: Sequence, salt: str, treatment_share: float = 0.5, strata: Sequence | None = None,
) -> np.ndarray:
    """Arm of each unit, ``"treatment"`` or ``"control"``, by hashing its id with ``salt``.

    Parameters
    ----------
    unit_ids : sequence
        Unit identifiers (converted with ``str``).
    salt : str
        Experiment-specific salt; a new salt gives an independent assignment.
    treatment_share : float
        Target share of treated units, in (0, 1).
    strata : sequence, optional
        Stratum of each unit. Within a stratum units are ranked by their hash and the first
        ``round(share x size)`` are treated, so every stratum is balanced to within one unit
        (stratified randomization). Without strata each unit is treated when its hash falls
        below ``treatment_share`` (Bernoulli, so the split varies around the target).

    Returns
    -------
    ndarray of str
    """
    if not 0 < treatment_share < 1:
        raise DataError(f"treatment_share must be in (0, 1), got {treatment_share}")
    ids = [str(u) for u in unit_ids]
    u = hash_uniform(ids, salt)
    treated = u < treatment_share
    if strata is not None:
        strata = np.asarray([str(s) for s in strata])
        if strata.size != len(ids):
            raise DataError(f"strata has {strata.size} entries for {len(ids)} units")
        treated = np.zeros(len(ids), dtype=bool)
        for s in np.unique(strata):
            idx = np.flatnonzero(strata == s)
            # Rounding remainder goes to a hash-chosen side so small strata do not all lean one way.
            target = treatment_share * idx.size
            k = int(np.floor(target + hash_uniform([s], salt + ":stratum")[0]))
            order = idx[np.argsort(u[idx], kind="stable")]
            treated[order[:k]] = True
    return np.where(treated, "treatment", "control")


def switchback_schedule(
    start: datetime, end: datetime, *, block_hours: int, salt: str, treatment_share: float = 0.5,
) -> list[dict]:
    """Time blocks from ``start`` to ``end`` with an arm each (hash of the block's start time).

    Returns
    -------
    list of dict
        ``{"block": i, "start": datetime, "end": datetime, "arm": str}`` per block.
    """
    if end <= start:
        raise DataError(f"end ({end}) must be after start ({start})")
    step = timedelta(hours=block_hours)
    starts = []
    t = start
    while t < end:
        starts.append(t)
        t += step
    arms = assign([s.isoformat() for s in starts], salt, treatment_share)
    return [{"block": i, "start": s, "end": min(s + step, end), "arm": str(a)} for i, (s, a) in enumerate(zip(starts, arms))]
