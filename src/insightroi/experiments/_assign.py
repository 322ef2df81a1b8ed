"""Assigning the program's experiment units to arms: collect the units, stratify, keep what is stored.

The arms come from :func:`insightroi.experiments.assign` (salted hash; balanced within one unit
per stratum when the program names ``experiment.strata``). What this module adds is what an
operator needs to run that over the program's life:

* the units, read from the store (distinct ids of the program's unit in a fact table, with the
  strata columns looked up where they live) or from a CSV file the user gives;
* the units already stored for the experiment keep their arm, so re-running after new units
  appear never moves a unit; new units of a stratum that already has assigned ones fill it
  towards its target, so the stratum stays balanced to within one unit where the stored arms
  allow it;
* a balance table per stratum and a sample-ratio-mismatch check on the whole assignment;
* the rows for the store's ``assignments`` table, with ids derived from the experiment and the
  unit, so writing them twice is a duplicate and never a second row.

Nothing here prints or writes; the CLI (``insightroi assign``) writes the rows through ingestion.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

from insightroi.errors import DataError
from insightroi.experiments._checks import srm_check
from insightroi.experiments._common import CONTROL, TREATMENT
from insightroi.experiments._design import assign, hash_uniform
from insightroi.metrics import UNIT_COLUMNS
from insightroi.program import Program
from insightroi.stats import Check
from insightroi.store import Store

__all__ = [
    "MISSING_STRATUM",
    "STRATA_TABLES",
    "AssignmentPlan",
    "BalanceRow",
    "Units",
    "assign_units",
    "assignment_id",
    "balance_rows",
    "plan_assignment",
    "read_units_csv",
    "stored_arms",
    "store_units",
    "unit_column",
]

#: Stratum value of a unit whose strata column is empty (it forms a stratum of its own).
MISSING_STRATUM = "(missing)"

#: Store tables searched, in this order after the ones units are read from, for a strata column.
STRATA_TABLES = ("products", "orders", "feedback", "tickets", "refunds", "traffic")

# The column that holds a unit's id in the fact tables; an order is its row's id.
_UNIT_COLUMNS = {**UNIT_COLUMNS, "order": "id"}
# Joins tuples of strata values into one key for assign(); a control character no id contains.
_SEP = "\x1f"


@dataclass(frozen=True)
class Units:
    """The units to assign: ids, and each one's value of every strata column.

    Attributes
    ----------
    ids : tuple of str
        Distinct unit ids, sorted (so the result does not depend on the order they were read in).
    strata : tuple of tuple of str
        Per unit, its value of each of ``columns`` (:data:`MISSING_STRATUM` when empty).
    columns : tuple of str
        The strata columns (the program's ``experiment.strata``), possibly empty.
    source : str
        Where the units came from, for messages (a file name, or ``store table orders``).
    notes : tuple of str
        Things the reader should know (units with more than one value of a strata column, ...).
    """

    ids: tuple[str, ...]
    strata: tuple[tuple[str, ...], ...]
    columns: tuple[str, ...]
    source: str
    notes: tuple[str, ...] = ()

    def keys(self) -> list[str] | None:
        """One stratum key per unit (the values joined), or None without strata columns."""
        if not self.columns:
            return None
        return [_SEP.join(s) for s in self.strata]


@dataclass(frozen=True)
class BalanceRow:
    """One line of the balance table: a stratum (or ``overall``) and its arm counts.

    Attributes
    ----------
    stratum : tuple of str
        The stratum's value of each strata column; empty for the overall line.
    n, treated, control : int
        Units, and units per arm.
    share : float
        ``treated / n``.
    target : float
        ``treatment_share x n``: what a perfectly balanced stratum would treat.
    """

    stratum: tuple[str, ...]
    n: int
    treated: int
    control: int
    share: float
    target: float

    @property
    def off_by(self) -> float:
        """Treated units minus the target (within ``(-1, 1)`` for a balanced stratum)."""
        return self.treated - self.target


@dataclass(frozen=True)
class AssignmentPlan:
    """The experiment's assignment of ``units``: arms, balance, SRM check and the rows to store.

    Attributes
    ----------
    experiment, unit_type, salt : str
        From the program file's ``[experiment]``.
    treatment_share : float
        The designed share of treated units.
    units : Units
        The units assigned.
    arms : ndarray of str
        ``"treatment"`` or ``"control"`` per unit of ``units.ids``.
    kept : ndarray of bool
        True where the unit already had an arm in the store (it keeps it; no row is written).
    balance : list of BalanceRow
        One row per stratum (sorted), then the overall row.
    srm : Check
        Sample-ratio mismatch of the overall counts against ``treatment_share``
        (:func:`insightroi.experiments.srm_check`: chi-square, fails below p = 0.001).
    assigned_at : datetime
        When the new assignments take effect (timezone-aware, UTC).
    stored_elsewhere : int
        Units the store assigns for this experiment that are not among ``units`` (left alone).
    """

    experiment: str
    unit_type: str
    salt: str
    treatment_share: float
    units: Units
    arms: np.ndarray
    kept: np.ndarray
    balance: list[BalanceRow]
    srm: Check
    assigned_at: datetime
    stored_elsewhere: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def n_new(self) -> int:
        """Units without a stored arm (the rows :meth:`new_rows` holds)."""
        return int((~self.kept).sum())

    def new_rows(self) -> pa.Table:
        """Rows for the store's ``assignments`` table, one per unit without a stored arm.

        The id is :func:`assignment_id` of the experiment, unit type and unit, so the same unit
        written twice is the same row (ingestion counts it a duplicate).
        """
        idx = np.flatnonzero(~self.kept)
        ids = [self.units.ids[i] for i in idx]
        return pa.table({
            "id": pa.array([assignment_id(self.experiment, self.unit_type, u) for u in ids], pa.string()),
            "experiment": pa.array([self.experiment] * len(ids), pa.string()),
            "unit_type": pa.array([self.unit_type] * len(ids), pa.string()),
            "unit_id": pa.array(ids, pa.string()),
            "arm": pa.array([str(self.arms[i]) for i in idx], pa.string()),
            "assigned_at": pa.array([self.assigned_at] * len(ids), pa.timestamp("us", tz="UTC")),
        })


def assignment_id(experiment: str, unit_type: str, unit_id: str) -> str:
    """Stable id of a unit's assignment row: ``asg-`` + 24 hex digits of sha256.

    Hashed rather than spelled out so a unit id that carries PII (an e-mail as customer id,
    pseudonymised in ``unit_id`` by ingestion) never lands in the id column in clear.
    """
    h = hashlib.sha256(f"{experiment}\x1f{unit_type}\x1f{unit_id}".encode()).hexdigest()
    return f"asg-{h[:24]}"


def unit_column(unit: str) -> str:
    """The column of the store's fact tables that holds a ``unit``'s id (``customer`` -> ``customer_id``).

    Raises
    ------
    DataError
        For a unit no table holds (``time_block``: a switchback's blocks come from its schedule).
    """
    if unit not in _UNIT_COLUMNS:
        raise DataError(f"unit {unit!r} cannot be read from the store's tables (supported: "
                        f"{sorted(_UNIT_COLUMNS)}); a switchback's time blocks come from switchback_schedule")
    return _UNIT_COLUMNS[unit]


def assign_units(
    unit_ids: Sequence[str],
    salt: str,
    treatment_share: float = 0.5,
    strata: Sequence[str] | None = None,
    existing: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Arms of ``unit_ids``, keeping the arm of every unit in ``existing``.

    Without ``existing`` this is :func:`insightroi.experiments.assign`. A unit in ``existing``
    keeps its arm. Without strata a new unit gets its hash arm (Bernoulli, independent of the
    other units). With strata, a stratum with no stored unit is assigned as
    :func:`~insightroi.experiments.assign` would; in one with stored units the new units are
    ranked by their hash and the first ``k`` treated, where ``k`` brings the stratum's treated
    count to its target ``floor(share x size + h)`` (the same target and hash offset ``h`` as
    :func:`~insightroi.experiments.assign`), clipped to what the new units can reach.

    Parameters
    ----------
    unit_ids : sequence of str
        Distinct unit ids.
    salt : str
        The experiment's salt.
    treatment_share : float
        Target share treated, in (0, 1).
    strata : sequence of str, optional
        Stratum key per unit.
    existing : mapping, optional
        Unit id -> stored arm.

    Returns
    -------
    ndarray of str
    """
    ids = [str(u) for u in unit_ids]
    existing = existing or {}
    old = np.array([u in existing for u in ids], dtype=bool)
    if not old.any():
        return assign(ids, salt, treatment_share, strata)
    arms = np.empty(len(ids), dtype=object)
    arms[old] = [existing[u] for u, o in zip(ids, old) if o]
    new = np.flatnonzero(~old)
    if new.size == 0:
        return arms.astype(str)
    if strata is None:
        arms[new] = assign([ids[i] for i in new], salt, treatment_share)
        return arms.astype(str)
    keys = np.asarray([str(s) for s in strata])
    if keys.size != len(ids):
        raise DataError(f"strata has {keys.size} entries for {len(ids)} units")
    u = hash_uniform(ids, salt)
    for s in np.unique(keys[new]):
        members = np.flatnonzero(keys == s)
        fresh = members[~old[members]]
        if old[members].sum() == 0:
            arms[fresh] = assign([ids[i] for i in fresh], salt, treatment_share, [s] * fresh.size)
            continue
        # Same target and same hash-chosen rounding side as assign(), so the stratum ends where a
        # fresh stratified assignment of all its units would have put its count.
        target = int(np.floor(treatment_share * members.size + hash_uniform([s], salt + ":stratum")[0]))
        have = sum(arms[i] == TREATMENT for i in members[old[members]])
        k = min(max(target - have, 0), fresh.size)
        order = fresh[np.argsort(u[fresh], kind="stable")]
        arms[order[:k]] = TREATMENT
        arms[order[k:]] = CONTROL
    return arms.astype(str)


def balance_rows(units: Units, arms: Sequence[str], treatment_share: float) -> list[BalanceRow]:
    """The balance table: per stratum (sorted) its units, treated, control and share, then overall.

    Parameters
    ----------
    units : Units
    arms : sequence of str
        Arm per unit of ``units.ids``.
    treatment_share : float

    Returns
    -------
    list of BalanceRow
        Strata first (none without strata columns), the overall row last (``stratum == ()``).
    """
    arms = np.asarray(arms)
    treated = arms == TREATMENT
    rows = []
    if units.columns:
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, s in enumerate(units.strata):
            groups.setdefault(tuple(s), []).append(i)
        for s in sorted(groups):
            idx = np.asarray(groups[s])
            rows.append(_row(s, treated[idx], treatment_share))
    rows.append(_row((), treated, treatment_share))
    return rows


def _row(stratum: tuple[str, ...], treated: np.ndarray, share: float) -> BalanceRow:
    n = int(treated.size)
    t = int(treated.sum())
    return BalanceRow(stratum, n, t, n - t, t / n if n else float("nan"), share * n)


def stored_arms(store: Store, experiment: str, unit_type: str) -> dict[str, str]:
    """Unit id -> arm of the experiment's stored assignments (a unit's first, by ``assigned_at``).

    The first assignment is the unit's arm for the analysis too (intention to treat), so that
    is the arm a re-run keeps.
    """
    a = store.table("assignments")
    a = a.filter((a.experiment == experiment) & (a.unit_type == unit_type))
    df = a.group_by(unit_id=a.unit_id.cast("string")).aggregate(arm=a.arm.argmin(a.assigned_at)).execute()
    return dict(zip(df["unit_id"].astype(str), df["arm"].astype(str)))


def store_units(store: Store, program: Program, tables: Sequence[str] = ("orders",)) -> Units:
    """Distinct units of the program's experiment unit in ``tables``, with their strata values.

    A strata column is read from the first table that holds both the unit column and it:
    ``tables`` first, then :data:`STRATA_TABLES` (so a SKU family's ``category`` comes from
    ``products`` while its units come from ``orders``). A unit with several values of a strata
    column (a customer who moved region) takes the value on most rows (ties: the smallest), and
    the notes count such units; a unit with none is in stratum :data:`MISSING_STRATUM`.

    Parameters
    ----------
    store : Store
    program : Program
        Its ``experiment.unit`` and ``experiment.strata``.
    tables : sequence of str
        Store tables to read the units from.

    Returns
    -------
    Units

    Raises
    ------
    DataError
        For a table without the unit column, a strata column no table has, or no units at all.
    """
    e = program.experiment
    ucol = unit_column(e.unit)
    ids: set[str] = set()
    for name in tables:
        t = store.table(name)
        if ucol not in t.columns:
            raise DataError(f"store table {name!r} has no column {ucol!r} (the id of experiment unit {e.unit!r})")
        col = t[ucol].cast("string")
        ids.update(str(v) for v in t.filter(col.notnull() & (col != "")).select(u=col).distinct().execute()["u"])
    if not ids:
        raise DataError(f"no {e.unit} units in store table(s) {', '.join(tables)} (column {ucol!r} is empty)")
    order = sorted(ids)
    values: dict[str, dict[str, str]] = {}
    notes = []
    searched = list(dict.fromkeys([*tables, *STRATA_TABLES]))
    for scol in e.strata:
        name = next((n for n in searched if {ucol, scol} <= set(store.table(n).columns)), None)
        if name is None:
            raise DataError(f"strata column {scol!r} (experiment.strata) is in no store table that also has "
                            f"{ucol!r}; searched: {', '.join(searched)}")
        picked, split = _modal_values(store, name, ucol, scol)
        values[scol] = picked
        n_split = sum(1 for u in order if u in split)
        if n_split:
            notes.append(f"{n_split} unit(s) have more than one {scol!r} in {name}; each takes its most frequent value")
    strata = tuple(tuple(values[c].get(u) or MISSING_STRATUM for c in e.strata) for u in order)
    n_missing = sum(1 for s in strata if MISSING_STRATUM in s)
    if n_missing:
        notes.append(f"{n_missing} unit(s) have no value of a strata column: they form the stratum {MISSING_STRATUM!r}")
    return Units(tuple(order), strata, tuple(e.strata), f"store table(s) {', '.join(tables)}", tuple(notes))


def _modal_values(store: Store, table: str, ucol: str, scol: str) -> tuple[dict[str, str], set[str]]:
    t = store.table(table)
    u, s = t[ucol].cast("string"), t[scol].cast("string")
    t = t.filter(u.notnull() & s.notnull() & (s != "")).mutate(_u=u, _s=s)
    df = t.group_by(["_u", "_s"]).aggregate(_n=t.count()).execute()
    df = df.sort_values(["_u", "_n", "_s"], ascending=[True, False, True], kind="stable")
    split = set(df["_u"][df["_u"].duplicated()].astype(str))
    first = df.drop_duplicates("_u")
    return dict(zip(first["_u"].astype(str), first["_s"].astype(str))), split


def read_units_csv(path: str | Path, unit: str, strata: Sequence[str], *, id_column: str | None = None) -> Units:
    """Units from a CSV file: a unit id column and one column per strata column.

    The id column is ``id_column``, else the first of ``unit_id``, the unit's store column
    (``customer_id``, ``sku_family``) and the unit's name that the header has. A unit listed
    twice with the same strata values counts once.

    Parameters
    ----------
    path : str or Path
        UTF-8 CSV with a header line.
    unit : str
        The program's ``experiment.unit``.
    strata : sequence of str
        The program's ``experiment.strata``: columns the file must have.
    id_column : str, optional

    Returns
    -------
    Units

    Raises
    ------
    DataError
        Naming the file (and row and column where there is one): no header, a missing id or
        strata column, an empty id, a row with too many or too few fields, a unit listed twice
        with different strata values, or no rows.
    """
    path = Path(path)
    name = path.name
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the units file ({exc.strerror or exc})") from None
    with fh:
        try:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header or not any(h.strip() for h in header):
                raise DataError(f"{name}: empty file or no header line; expected a unit id column and strata columns")
            header = [h.strip() for h in header]
            candidates = ([id_column] if id_column
                          else list(dict.fromkeys(["unit_id", _UNIT_COLUMNS.get(unit, unit), unit])))
            icol = next((c for c in candidates if c in header), None)
            if icol is None:
                want = (f"column {id_column!r}" if id_column
                        else "a unit id column: one of " + ", ".join(map(repr, candidates)))
                raise DataError(f"{name}: no {want}; the header has {header}")
            missing = [c for c in strata if c not in header]
            if missing:
                raise DataError(f"{name}: strata column(s) {missing} (experiment.strata) missing; "
                                f"the header has {header}")
            ii = header.index(icol)
            si = [header.index(c) for c in strata]
            seen: dict[str, tuple[tuple[str, ...], int]] = {}
            n_missing = 0
            for rownum, rec in enumerate(reader, start=2):
                if not rec or all(not f.strip() for f in rec):
                    continue
                if len(rec) != len(header):
                    raise DataError(f"{name}, row {rownum}: {len(rec)} fields, the header has {len(header)}")
                uid = rec[ii].strip()
                if not uid:
                    raise DataError(f"{name}, row {rownum}: column {icol!r} (unit id) is empty")
                vals = tuple(rec[j].strip() or MISSING_STRATUM for j in si)
                n_missing += MISSING_STRATUM in vals
                if uid in seen and seen[uid][0] != vals:
                    prev, prow = seen[uid]
                    col = strata[next(k for k in range(len(vals)) if vals[k] != prev[k])]
                    raise DataError(f"{name}, rows {prow} and {rownum}: unit {uid!r} has two values of column "
                                    f"{col!r}: {prev[strata.index(col)]!r} and {vals[strata.index(col)]!r}")
                seen.setdefault(uid, (vals, rownum))
        except csv.Error as exc:
            raise DataError(f"{name}, row {reader.line_num}: not valid CSV ({exc})") from None
        except UnicodeDecodeError:
            raise DataError(f"{name}: not UTF-8 text") from None
    if not seen:
        raise DataError(f"{name}: no units (only a header line)")
    order = sorted(seen)
    notes = (f"{n_missing} row(s) have an empty strata column: those units form the stratum {MISSING_STRATUM!r}",) \
        if n_missing else ()
    return Units(tuple(order), tuple(seen[u][0] for u in order), tuple(strata), name, notes)


def plan_assignment(
    units: Units,
    program: Program,
    *,
    existing: Mapping[str, str] | None = None,
    assigned_at: datetime | None = None,
) -> AssignmentPlan:
    """Assign ``units`` to the program's experiment, keeping stored arms; balance and SRM check.

    Parameters
    ----------
    units : Units
        From :func:`store_units` or :func:`read_units_csv`; its strata columns must be the
        program's ``experiment.strata``.
    program : Program
        Its ``experiment``: ``name``, ``unit``, ``salt``, ``treatment_share``, ``strata``, ``start``.
    existing : mapping, optional
        Unit id -> arm already stored (:func:`stored_arms`); those units keep their arm.
    assigned_at : datetime, optional
        When the new assignments take effect; default midnight UTC of ``experiment.start``. A
        naive value is taken as UTC.

    Returns
    -------
    AssignmentPlan

    Raises
    ------
    DataError
        When a stored arm is neither ``treatment`` nor ``control``, or the strata columns differ.
    """
    e = program.experiment
    if tuple(units.columns) != tuple(e.strata):
        raise DataError(f"units carry strata columns {list(units.columns)}, the program's experiment.strata is {e.strata}")
    existing = dict(existing or {})
    odd = sorted({a for a in existing.values() if a not in (TREATMENT, CONTROL)})
    if odd:
        raise DataError(f"the store assigns experiment {e.name!r} to arms {odd}; expected 'treatment' and 'control'")
    arms = assign_units(units.ids, e.salt, e.treatment_share, units.keys(), existing)
    kept = np.array([u in existing for u in units.ids], dtype=bool)
    balance = balance_rows(units, arms, e.treatment_share)
    overall = balance[-1]
    srm = srm_check([overall.treated, overall.control], [e.treatment_share, 1 - e.treatment_share])
    if assigned_at is None:
        assigned_at = datetime.combine(e.start, time(0), tzinfo=timezone.utc)
    elif assigned_at.tzinfo is None:
        assigned_at = assigned_at.replace(tzinfo=timezone.utc)
    listed = set(units.ids)
    elsewhere = sum(1 for u in existing if u not in listed)
    return AssignmentPlan(e.name, e.unit, e.salt, e.treatment_share, units, arms, kept, balance, srm,
                          assigned_at, elsewhere, units.notes)
