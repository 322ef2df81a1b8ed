"""Opening a store from a URL, creating and migrating its tables, and transactional writes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import duckdb
import ibis
import pyarrow as pa

from insightroi.errors import DataError, StoreBusyError, StoreError
from insightroi.store._schema import SCHEMA_VERSION, TABLES, USER_TABLE_PREFIX, TableSpec, is_user_table

__all__ = ["Store", "UnboundStore", "open_store", "register_opener", "copy_store", "duckdb_file", "DEFAULT_URL",
           "default_duckdb_memory_limit", "machine_memory_bytes"]

DEFAULT_URL = "duckdb:///insightroi.duckdb"
_VERSION_TABLE = "_schema_version"
_VERSION_COLUMNS = {"version": "int64", "applied_at": "timestamp"}
# How long opening a DuckDB file waits for another process's write lock before giving up. A
# server that opens the file per request holds it for milliseconds, so a CLI command started
# meanwhile gets in after a short wait; a long job (classify) is reported instead of waited on.
DEFAULT_BUSY_TIMEOUT = 5.0
#: Share of the machine's memory (or of its cgroup's limit) a DuckDB store may use for its buffer
#: pool unless the URL says otherwise (``?memory_limit=...``). DuckDB's own default, 80%, assumes
#: DuckDB has the machine to itself; here it shares the process with pandas stages and forked
#: classification workers. With it the 100M-order pipeline peaked at 11.1 GiB on a 24 GiB
#: machine; with a fifth (4.8 GB) at 6.4 GiB, and no slower (benchmarks/RESULTS.md, scale rows).
DUCKDB_MEMORY_SHARE = 0.2
# Catalog name of the file in a store opened with hold=False (attached per unit of work).
_ATTACHED = "insightroi_store"


def _arrow_schema(spec: TableSpec) -> pa.Schema:
    return ibis.schema(spec.columns).to_pyarrow()


# Declared user-table types in each engine's SQL (for the views attach_source makes).
_SQL_TYPES = {
    "duckdb": {"string": "VARCHAR", "int64": "BIGINT", "float64": "DOUBLE", "boolean": "BOOLEAN", "date": "DATE",
               "timestamp": "TIMESTAMP"},
    "pyspark": {"string": "STRING", "int64": "BIGINT", "float64": "DOUBLE", "boolean": "BOOLEAN", "date": "DATE",
                "timestamp": "TIMESTAMP"},
}
_SQL_TYPES["databricks"] = _SQL_TYPES["pyspark"]


@dataclass
class Store:
    """An opened store: an Ibis backend plus the table schemas insightroi expects.

    Use :func:`open_store` to build one. Reads go through :meth:`table` (Ibis expressions, so the
    same aggregation runs on DuckDB, Spark or Databricks); writes go through :meth:`append`
    inside :meth:`transaction`. A DuckDB file is one process at a time: a store opened with
    ``hold=False`` (the server's) takes the file only inside :meth:`attached` blocks.
    """

    url: str
    kind: str
    con: Any
    path: Path | None = None
    hold: bool = True
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    _lease: "_Lease" = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._lease = _Lease(self)
        self._attached = False
        # User tables' specs, from ensure_table (the declared key and PII columns, stored column order).
        self._user_specs: dict[str, TableSpec] = {}
        # User tables read in place: name -> (source, declared columns), see attach_source.
        self._sources: dict[str, tuple[str, tuple]] = {}
        # Table expressions of a held DuckDB store: Ibis asks DuckDB for the schema on every
        # ``con.table`` (~3 ms); the demo asks 134 times. Cleared by every schema change made
        # through the store, and by raw SQL, which may make one.
        self._table_exprs: dict[str, ibis.Table] = {}

    # ---- holding the file ---------------------------------------------------------------------
    def attached(self) -> "_Lease":
        """The store's unit of work: a reentrant, thread-exclusive context manager.

        On a store opened with ``hold=False`` the DuckDB file is attached (its write lock taken)
        when the outermost ``with store.attached():`` of a thread starts and released when it
        ends, so other processes can open the file in between. Build and execute Ibis
        expressions inside it. On any other store it only serialises threads.

        Returns
        -------
        context manager
            The same object on every call; entering it returns the store.

        Raises
        ------
        StoreBusyError
            (On entering) another process held the file for longer than ``busy_timeout``.
        """
        return self._lease

    def _reads(self):
        # A held store keeps its old behaviour (reads take no lock); a detached one must attach.
        return contextlib.nullcontext() if self.hold else self._lease

    def _attach(self) -> None:
        if self._attached:
            return
        raw = self.con.con
        target = str(self.path).replace("'", "''")
        _wait_for_lock(lambda: raw.execute(f"ATTACH '{target}' AS {_ATTACHED}"), self.path, self.busy_timeout)
        self._attached = True
        raw.execute(f"USE {_ATTACHED}")

    def _detach(self) -> None:
        if not self._attached:
            return
        raw = self.con.con
        raw.execute("USE memory")
        raw.execute(f"DETACH {_ATTACHED}")
        self._attached = False

    # ---- schema -------------------------------------------------------------------------
    def schema_version(self) -> int:
        """The schema version recorded in the store (0 for an empty store)."""
        with self._reads():
            if _VERSION_TABLE not in self.con.list_tables():
                return 0
            rows = self.con.table(_VERSION_TABLE).version.max().execute()
        return int(rows) if rows is not None else 0

    def migrate(self) -> int:
        """Create missing tables and apply pending migrations; returns the version reached.

        Raises
        ------
        StoreError
            If the store was written by a newer insightroi (its version is above ours).
        """
        self._schema_changed()
        with self._lease:
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.url}: schema version {current} is newer than this insightroi understands "
                    f"({SCHEMA_VERSION}); upgrade insightroi"
                )
            existing = set(self.con.list_tables())
            for name, spec in TABLES.items():
                if name not in existing:
                    self.con.create_table(name, schema=ibis.schema(spec.columns))
            for version in range(max(current, 1), SCHEMA_VERSION):
                _MIGRATIONS[version](self)
            if current < SCHEMA_VERSION:
                if _VERSION_TABLE not in existing:
                    self.con.create_table(_VERSION_TABLE, schema=ibis.schema(_VERSION_COLUMNS))
                if self.kind == "duckdb":
                    self.con.con.execute(f"INSERT INTO {_VERSION_TABLE} VALUES (?, ?)", [SCHEMA_VERSION, _utcnow()])
                else:
                    stamp = pa.table(
                        {"version": pa.array([SCHEMA_VERSION], pa.int64()),
                         "applied_at": pa.array([_utcnow()], pa.timestamp("us"))}
                    )
                    self.con.insert(_VERSION_TABLE, stamp)
            return SCHEMA_VERSION

    # ---- reads ----------------------------------------------------------------------------
    def table(self, name: str) -> ibis.Table:
        """The Ibis table expression for ``name`` (KeyError naming the known tables otherwise).

        On a store opened with ``hold=False``, call it (and execute the expression) inside
        ``with store.attached():``.
        """
        if not self.hold and not self._lease.held_here():
            raise StoreError(f"{self.url}: opened with hold=False; use its tables inside `with store.attached():`")
        cached = self._table_exprs.get(name)
        if cached is not None:
            return cached
        if name not in TABLES and name not in self.con.list_tables():
            raise KeyError(f"no table {name!r}; tables: {sorted(TABLES) + self.user_tables()}")
        expr = self.con.table(name)
        if self.kind == "duckdb" and self.hold:
            # Only a held file: another process cannot change its schema under this one.
            self._table_exprs[name] = expr
        return expr

    def _schema_changed(self) -> None:
        self._table_exprs.clear()

    # ---- user tables -------------------------------------------------------------------------
    def user_tables(self) -> list[str]:
        """The user tables (``user_<name>``) this store holds, sorted."""
        with self._reads():
            return sorted(t for t in self.con.list_tables() if is_user_table(t))

    def spec(self, name: str) -> TableSpec:
        """The :class:`TableSpec` of table ``name``: one of :data:`TABLES`, or a user table.

        A user table's spec is the one given to :meth:`ensure_table` in this process; otherwise it
        is read from the stored table (its columns only: key and PII columns live in the program
        file).

        Raises
        ------
        KeyError
            For a table the store does not have (the message names those it has).
        """
        if name in TABLES:
            return TABLES[name]
        if name in self._user_specs:
            return self._user_specs[name]
        stored = self._stored_columns(name) if is_user_table(name) else None
        if stored is None:
            raise KeyError(f"no table {name!r}; tables: {sorted(TABLES) + self.user_tables()}")
        return TableSpec(name, stored, key="", required=(), ingestible=False)

    def ensure_table(self, spec: TableSpec) -> TableSpec:
        """Create user table ``spec.name`` if missing, else check it has ``spec``'s columns and types.

        User tables are never migrated: a declaration whose columns differ from a table that holds
        rows is an error naming the table and each difference. An empty table with other columns
        is created again (nothing is lost). Column order may differ; the stored order is kept.
        Creating a user table leaves :data:`~insightroi.store.SCHEMA_VERSION` as it is.

        Parameters
        ----------
        spec : TableSpec
            From :func:`~insightroi.store.user_table_spec`; its name starts with ``user_``.

        Returns
        -------
        TableSpec
            ``spec`` with its columns in the stored order (what :meth:`append` writes in).

        Raises
        ------
        StoreError
            When the stored table holds rows and its columns or types differ from ``spec``'s, or
            ``spec`` is not a user table.
        """
        name = spec.name
        if not is_user_table(name):
            raise StoreError(f"{name!r} is not a user table (their names start with {USER_TABLE_PREFIX!r} and are "
                             "not one of the store's own tables)")
        with self._lease:
            stored = self._stored_columns(name)
            if stored is not None:
                diff = _column_differences(spec.columns, stored)
                if not diff:
                    spec = _replace_columns(spec, {c: spec.columns[c] for c in stored})
                    self._user_specs[name] = spec
                    return spec
                rows = self.count(name)
                if rows:
                    raise StoreError(
                        f"user table {name!r} holds {rows:,} row(s) stored with other columns than declared: "
                        f"{'; '.join(diff)}. User tables are not migrated: declare the columns as stored, or "
                        f"move the data away first (e.g. ALTER TABLE \"{name}\" RENAME TO \"{name}_old\" in DuckDB)"
                    )
                self._drop(name)
            self._create(name, spec.columns)
            self._user_specs[name] = spec
            return spec

    def attach_source(self, name: str, source: str, columns: dict[str, str]) -> None:
        """Make user table ``name`` a view over ``source``, read in place (``[[tables]] source``).

        Parameters
        ----------
        name : str
            The user table (``user_<name>``).
        source : str
            A table the engine holds (``catalog.schema.table``, ``db.table``, a name) or, on DuckDB,
            a Parquet or CSV path or glob.
        columns : dict
            Declared column -> type; the view selects exactly these, cast, so the measures see the
            declared schema whatever the warehouse stores.

        Raises
        ------
        DataError
            When the source is missing or lacks a declared column (the engine's message included).
        """
        if not is_user_table(name):
            raise StoreError(f"{name!r} is not a user table")
        if self._sources.get(name) == (source, tuple(columns.items())):
            return  # a view per process and declaration: the warehouse table is read at query time
        quote = "`" if self.kind in ("pyspark", "databricks") else '"'
        cols = ", ".join(f"CAST({quote}{c}{quote} AS {_SQL_TYPES[self.kind][t]}) AS {quote}{c}{quote}"
                         for c, t in columns.items())
        if self.kind == "duckdb" and re.search(r"[/*]|\.(parquet|csv|tsv)$", source):
            esc = source.replace("'", "''")
            frm = f"read_parquet('{esc}')" if re.search(r"\.parquet$", source) else f"read_csv_auto('{esc}')"
        else:
            frm = ".".join(f"{quote}{part.strip('`')}{quote}" for part in source.split("."))
        kind = "TEMP VIEW" if self.kind == "pyspark" else "VIEW"
        sql = f"CREATE OR REPLACE {kind} {quote}{name}{quote} AS SELECT {cols} FROM {frm}"
        self._schema_changed()
        try:
            with self._lease:
                if self.kind == "duckdb":
                    self.con.con.execute(sql)
                elif self.kind == "pyspark":
                    self.con._session.sql(sql)
                else:
                    self.con.raw_sql(sql)
        except Exception as exc:  # the engine's own error names the missing table or column
            raise DataError(f"user table {name.removeprefix(USER_TABLE_PREFIX)!r}: cannot read its source "
                            f"{source!r} in place: {str(exc).splitlines()[0]}") from None
        self._sources[name] = (source, tuple(columns.items()))

    def source_of(self, name: str) -> str | None:
        """The source user table ``name`` is read in place from in this process, or None."""
        got = self._sources.get(name)
        return got[0] if got else None

    def _stored_columns(self, name: str) -> dict[str, str] | None:
        """Column -> type name of a stored table (None when absent); Spark registers a warehouse folder first."""
        with self._reads():
            if name not in self.con.list_tables():
                if self.kind != "pyspark" or not _register_folder(self.con._session, name):
                    return None
            schema = self.con.get_schema(name)
        return {col: _type_name(dt) for col, dt in schema.items()}

    def _create(self, name: str, columns: dict[str, str]) -> None:
        self._schema_changed()
        if self.kind == "pyspark":
            folder = _warehouse_folder(self.con._session, name)
            if folder is not None and folder.is_dir() and not _data_files(folder):
                # An empty table's leftover folder (a dropped or never-written table): Spark refuses
                # to create a table over an existing location.
                shutil.rmtree(folder)
        self.con.create_table(name, schema=ibis.schema(columns))

    def _drop(self, name: str) -> None:
        self._schema_changed()
        # Plain SQL: Ibis' drop_table compiles to a bare "DROP TABLE" with some sqlglot versions.
        if self.kind == "duckdb":
            self.con.con.execute(f'DROP TABLE "{name}"')
        elif self.kind == "pyspark":
            self.con._session.sql(f"DROP TABLE `{name}`")
        else:
            self.con.drop_table(name)

    def count(self, name: str) -> int:
        """Number of rows in table ``name``."""
        with self._reads():
            return int(self.table(name).count().execute())

    def has_rows(self, name: str) -> bool:
        """Whether table ``name`` holds at least one row (without counting them on DuckDB)."""
        if self.kind == "duckdb":
            with self._lease:
                return bool(self.con.con.execute(f'SELECT EXISTS (SELECT 1 FROM "{name}")').fetchone()[0])
        return self.count(name) > 0

    def rows_by_id(self, name: str, ids: list[str]) -> list[dict[str, Any]]:
        """The rows of table ``name`` whose ``id`` is in ``ids``, as dicts (any order)."""
        if self.kind == "duckdb":
            return self.sql(f'SELECT * FROM "{name}" WHERE id IN (SELECT unnest(?))', [ids]).to_pylist()
        with self._reads():
            t = self.table(name)
            return t.filter(t.id.isin(ids)).execute().to_dict(orient="records")

    def first_row(self, name: str, columns: list[str], **equal: Any) -> dict[str, Any] | None:
        """``columns`` of one row of table ``name`` whose columns equal ``equal``'s values, or None."""
        if self.kind == "duckdb":
            cols = ", ".join(f'"{c}"' for c in columns)
            where = " AND ".join(f'"{c}" = ?' for c in equal)
            with self._lease:
                row = self.con.con.execute(f'SELECT {cols} FROM "{name}" WHERE {where} LIMIT 1', list(equal.values())).fetchone()
            return dict(zip(columns, row)) if row else None
        with self._reads():
            t = self.table(name)
            df = t.filter([t[c] == v for c, v in equal.items()]).select(columns).limit(1).execute()
        return None if df.empty else df.to_dict(orient="records")[0]

    def existing_keys(self, name: str, column: str, values: pa.Array, *, small: int = 1024) -> pa.Array:
        """The distinct ``values`` already present in ``name.column`` (strings).

        On DuckDB up to ``small`` values go in as a query parameter, more as a registered Arrow
        view; other engines semi-join an in-memory table.
        """
        if len(values) == 0:
            return pa.array([], pa.string())
        if self.kind == "duckdb":
            with self._lease:
                raw = self.con.con
                if len(values) <= small:
                    rows = raw.execute(
                        f'SELECT DISTINCT "{column}" FROM "{name}" WHERE "{column}" IN (SELECT unnest(?))',
                        [values.to_pylist()],
                    ).fetchall()
                    return pa.array([r[0] for r in rows], pa.string())
                view = f"_keys_{threading.get_ident()}"
                raw.register(view, pa.table({"k": values}))
                try:
                    got = raw.execute(f'SELECT k FROM "{view}" WHERE k IN (SELECT "{column}" FROM "{name}")')
                    return got.to_arrow_table().column("k").combine_chunks()
                finally:
                    raw.unregister(view)
        with self._reads():
            t = self.table(name)
            probe = ibis.memtable(pa.table({"_k": values}))
            hits = t.select(column).semi_join(probe, t[column] == probe._k).distinct().to_pyarrow()
        return hits.column(column).combine_chunks()

    def sql(self, query: str, params: list | None = None, *, fetch: bool = True) -> pa.Table | None:
        """Run raw SQL on an embedded DuckDB store and return Arrow (DuckDB only).

        ``fetch=False`` returns None instead: a statement whose result nobody reads (an INSERT's
        row count) skips the conversion to Arrow, ~0.5 ms of the server's group commit.
        """
        self.require_duckdb("raw SQL")
        if _DDL.search(query):
            self._schema_changed()
        with self._lease:
            result = self.con.con.execute(query, params or [])
            return result.to_arrow_table() if fetch else None

    # ---- writes ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator["Store"]:
        """One atomic batch: everything appended inside lands together or not at all.

        On DuckDB this is a real transaction on the file; a crash mid-batch leaves the store as
        before the batch. On other backends writes are per-append (documented limitation).
        """
        with self._lease:
            if self.kind != "duckdb":
                yield self
                return
            raw = self.con.con
            raw.execute("BEGIN TRANSACTION")
            try:
                yield self
            except BaseException:
                raw.execute("ROLLBACK")
                self._schema_changed()  # a table created inside the batch is gone again
                raise
            else:
                raw.execute("COMMIT")

    def append(self, name: str, data: pa.Table | Any) -> int:
        """Append rows to table ``name``; columns are cast to the table's schema.

        Parameters
        ----------
        name : str
            A table from :data:`insightroi.store.TABLES`, or a user table (``user_<name>``) that
            exists in the store.
        data : pyarrow.Table or pandas.DataFrame
            Rows to append; missing columns are filled with nulls, extra columns are an error.

        Returns
        -------
        int
            Number of rows appended.
        """
        spec = self.spec(name)
        table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        extra = set(table.column_names) - set(spec.columns)
        if extra:
            raise StoreError(f"table {name!r} has no columns {sorted(extra)}")
        target = _arrow_schema(spec)
        cols = []
        for f in target:
            if f.name in table.column_names:
                cols.append(table.column(f.name).cast(f.type))
            else:
                cols.append(pa.nulls(table.num_rows, f.type))
        table = pa.Table.from_arrays(cols, schema=target)
        if table.num_rows == 0:
            return 0
        with self._lease:
            if self.kind == "duckdb":
                raw = self.con.con
                view = f"_append_{name}_{threading.get_ident()}"
                raw.register(view, table)
                try:
                    raw.execute(f'INSERT INTO "{name}" SELECT * FROM "{view}"')
                finally:
                    raw.unregister(view)
            elif self.kind == "pyspark":
                # Spark's own Arrow reader keeps nulls as nulls; Ibis' insert goes through pandas,
                # whose string dtype turns a missing text value into the literal string "NaN".
                self.con._session.createDataFrame(table).write.insertInto(name)
            else:
                self.con.insert(name, table)
        return table.num_rows

    def save_result(self, kind: str, name: str, payload: dict[str, Any], result_id: str | None = None) -> str:
        """Save an analysis result (JSON) for reports and the dashboard; returns its id.

        Saving under an existing ``result_id`` replaces the old payload.
        """
        result_id = result_id or f"{kind}:{name}"
        row = pa.table(
            {
                "id": [result_id], "kind": [kind], "name": [name], "created_at": [_utcnow()],
                "payload": [json.dumps(payload, default=_json_default, allow_nan=False)],
            }
        )
        with self.transaction():
            if self.supports_row_deletes:
                self._delete_ids("results", [result_id])
            # Engines without row deletes (Spark's Parquet tables) keep every version; readers take
            # the latest row of an id, so the result is the same.
            self.append("results", row)
        return result_id

    def load_result(self, result_id: str) -> dict[str, Any] | None:
        """The payload saved under ``result_id``, or None."""
        with self._reads():
            t = self.table("results")
            rows = t.filter(t.id == result_id).order_by(ibis.desc("created_at")).select("payload").limit(1).execute()
        return None if rows.empty else json.loads(rows.payload.iloc[0])

    def load_results(self, kind: str | None = None) -> list[dict[str, Any]]:
        """All saved results (optionally of one kind) as dicts with id, kind, name, created_at, payload."""
        with self._reads():
            t = self.table("results")
            if kind is not None:
                t = t.filter(t.kind == kind)
            df = t.order_by("created_at").execute()
        df = df.drop_duplicates("id", keep="last")  # append-only engines keep superseded versions
        return [
            {"id": r.id, "kind": r.kind, "name": r.name, "created_at": r.created_at, "payload": json.loads(r.payload)}
            for r in df.itertuples()
        ]

    def _delete_ids(self, name: str, ids: list[str]) -> None:
        self.require_duckdb("deleting rows")
        key = TABLES[name].key
        self.con.con.execute(f'DELETE FROM "{name}" WHERE "{key}" IN (SELECT unnest(?))', [ids])

    @property
    def supports_row_deletes(self) -> bool:
        """Whether rows can be deleted in place (embedded DuckDB); other engines only append."""
        return self.kind == "duckdb"

    def require_duckdb(self, what: str) -> None:
        """Raise :class:`StoreError` naming ``what`` unless this is the embedded DuckDB store."""
        if self.kind != "duckdb":
            raise StoreError(f"{what} is only supported on the embedded DuckDB store, not {self.kind}")

    def close(self) -> None:
        """Close the connection (the file stays, and its lock is released)."""
        self._schema_changed()
        with self._lease._lock:  # after a unit of work in flight on another thread, without attaching
            self._attached = False
            with contextlib.suppress(Exception):
                self.con.disconnect()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Lease:
    """Reentrant per-thread unit of work on a store (see :meth:`Store.attached`)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.RLock()
        self._depth = 0
        self._owner: int | None = None
        self._waiting = 0
        self._waiting_lock = threading.Lock()

    def held_here(self) -> bool:
        return self._owner == threading.get_ident()

    @property
    def waiting(self) -> int:
        """Threads blocked on entering while another holds it (a holder that keeps it across
        units of work, like the server's store thread, lets it go when this is not 0)."""
        return self._waiting

    def __enter__(self) -> Store:
        if not self._lock.acquire(blocking=False):
            with self._waiting_lock:
                self._waiting += 1
            try:
                self._lock.acquire()
            finally:
                with self._waiting_lock:
                    self._waiting -= 1
        try:
            if self._depth == 0 and not self._store.hold:
                self._store._attach()
        except BaseException:
            self._lock.release()
            raise
        self._depth += 1
        self._owner = threading.get_ident()
        return self._store

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        try:
            if self._depth == 0:
                self._owner = None
                if not self._store.hold:
                    self._store._detach()
        finally:
            self._lock.release()


_BUSY_MARKERS = ("Could not set lock on file", "Conflicting lock is held", "Unique file handle conflict")


def _busy_timeout(value: float | None) -> float:
    if value is not None:
        return max(0.0, float(value))
    env = os.environ.get("INSIGHTROI_BUSY_TIMEOUT")
    if not env:
        return DEFAULT_BUSY_TIMEOUT
    try:
        return max(0.0, float(env))
    except ValueError:
        raise StoreError(f"INSIGHTROI_BUSY_TIMEOUT={env!r} is not a number of seconds") from None


def _command_line(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # not Linux, gone, or another user's process
        return None
    # Whitespace collapsed: an argument may hold newlines (python -c '...'), the message is one line.
    args = [" ".join(a.decode(errors="replace").split()) for a in raw.split(b"\0") if a]
    # `python .../bin/insightroi classify ...` reads better as `insightroi classify ...`.
    for i, a in enumerate(args):
        if Path(a).name == "insightroi":
            args = ["insightroi", *args[i + 1:]]
            break
    text = " ".join(args)
    return text if len(text) <= 160 else text[:157] + "..."


def _busy_error(exc: Exception, path: Path | None, waited: float) -> StoreBusyError:
    msg = str(exc)
    found = re.search(r"Conflicting lock is held in (.*?) \(PID (\d+)\)", msg)
    pid = int(found.group(2)) if found else None
    if pid is not None:
        holder = f"process {pid} ({_command_line(pid) or found.group(1)})"
    elif "Unique file handle conflict" in msg:
        pid = os.getpid()
        holder = f"another connection in this process ({pid})"
    else:
        holder = "another process"
    where = path.resolve() if path is not None else "the store"
    return StoreBusyError(
        f"store {where} is busy: {holder} has it open (waited {waited:g} s); a DuckDB file is used by one "
        "process at a time, so retry when that one has finished", path=str(where), pid=pid,
    )


def _waiting_dir(path: Path) -> Path:
    return path.with_name(path.name + ".waiting")


@contextlib.contextmanager
def _announce_waiting(path: Path | None) -> Iterator[None]:
    # A file per waiting thread in ``<store>.waiting/``: a server holding the store (which checks
    # for one between group commits, see lock_wanted) releases it at once instead of every few
    # seconds whether anyone waits or not. Best effort: a folder that cannot be written only
    # means the holder is not told.
    if path is None:
        yield
        return
    folder = _waiting_dir(path)
    marker = folder / f"{os.getpid()}-{threading.get_ident()}"
    try:
        folder.mkdir(exist_ok=True)
        marker.touch()
    except OSError:
        marker = None
    try:
        yield
    finally:
        if marker is not None:
            with contextlib.suppress(OSError):
                marker.unlink()
            with contextlib.suppress(OSError):  # not empty: another waiter's marker stays
                folder.rmdir()


def lock_wanted(path: Path | None) -> bool:
    """Whether another process is waiting for the store file at ``path`` (see :func:`_wait_for_lock`).

    Markers of processes that no longer run are removed. Costs one ``scandir`` of a folder that
    usually does not exist (microseconds), so a holder can ask between units of work.

    Parameters
    ----------
    path : Path or None
        The store's DuckDB file (None, an in-memory store: nobody can wait for it).

    Returns
    -------
    bool
        True when a live process other than this one announced that it waits.
    """
    if path is None:
        return False
    try:
        entries = list(os.scandir(_waiting_dir(path)))
    except OSError:
        return False
    me = os.getpid()
    for entry in entries:
        pid_text = entry.name.split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == me:
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:  # a waiter killed before it could clean up
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
            continue
        except PermissionError:  # another user's live process
            pass
        return True
    return False


def _wait_for_lock(attempt: Callable[[], Any], path: Path | None, timeout: float) -> Any:
    """Run ``attempt`` (an open or ATTACH), retrying while another process holds the file's lock.

    While it waits, it announces itself (:func:`lock_wanted`), so a server holding the file lets
    it go after its current unit of work.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    announced = False
    with contextlib.ExitStack() as waiting:
        while True:
            try:
                return attempt()
            except duckdb.Error as exc:
                if not any(m in str(exc) for m in _BUSY_MARKERS):
                    raise
                if not announced:  # refused once: from now on this thread waits, and says so
                    waiting.enter_context(_announce_waiting(path))
                    announced = True
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _busy_error(exc, path, timeout) from exc
                # Short polls: a server's per-request hold ends within milliseconds.
                time.sleep(min(delay, left))
                delay = min(delay * 2, 0.05)


# Raw SQL that may change a table's schema (a false positive only costs a DESCRIBE per table).
_DDL = re.compile(r"\b(CREATE|DROP|ALTER|ATTACH|DETACH|USE|RENAME|IMPORT)\b", re.IGNORECASE)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _type_name(dt: Any) -> str:
    """An Ibis type as the type names tables are declared with (``string``, ``int64``, ...)."""
    if dt.is_string():
        return "string"
    if dt.is_timestamp():
        return "timestamp"  # any precision or zone: both engines store microseconds, naive UTC
    for name in ("int64", "float64", "boolean", "date"):
        if dt.copy(nullable=True) == ibis.dtype(name):
            return name
    return str(dt.copy(nullable=True))


def _column_differences(declared: dict[str, str], stored: dict[str, str]) -> list[str]:
    """Human-readable differences between declared and stored columns (empty: the same)."""
    out = []
    added = [c for c in declared if c not in stored]
    removed = [c for c in stored if c not in declared]
    changed = [c for c in declared if c in stored and declared[c] != stored[c]]
    if added:
        out.append("declared but not stored: " + ", ".join(f"{c} ({declared[c]})" for c in added))
    if removed:
        out.append("stored but not declared: " + ", ".join(f"{c} ({stored[c]})" for c in removed))
    if changed:
        out.append("type changed: " + ", ".join(f"{c} (stored {stored[c]}, declared {declared[c]})" for c in changed))
    return out


def _replace_columns(spec: TableSpec, columns: dict[str, str]) -> TableSpec:
    return dataclasses.replace(spec, columns=columns)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def duckdb_file(url: str) -> Path | None:
    """The database file a ``duckdb://`` URL names (None for an in-memory store).

    ``duckdb:///relative/path.duckdb`` -> ``relative/path.duckdb``; ``duckdb:////abs/path`` ->
    ``/abs/path``; ``duckdb://:memory:`` -> None. The query (DuckDB settings) is not part of it.
    """
    parsed = urlparse(url)
    raw_path = parsed.netloc + parsed.path
    if raw_path in ("", ":memory:", "/:memory:"):
        return None
    return Path(raw_path[1:] if raw_path.startswith("/") else raw_path)


def machine_memory_bytes() -> int | None:
    """Memory this process may use: physical RAM, or the cgroup (v2 or v1) limit when lower.

    None where neither can be read.
    """
    limits = []
    with contextlib.suppress(ValueError, OSError, AttributeError):
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for cgroup_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(ValueError, OSError):
            limits.append(int(Path(cgroup_file).read_text().strip()))  # "max": no limit (ValueError)
    limits = [v for v in limits if v > 0]
    return min(limits) if limits else None


def default_duckdb_memory_limit() -> str | None:
    """The buffer pool a DuckDB store gets when its URL sets none: :data:`DUCKDB_MEMORY_SHARE`
    of :func:`machine_memory_bytes`, at least 1 GiB (None: DuckDB's own default)."""
    total = machine_memory_bytes()
    if total is None:
        return None
    return f"{max(1024, int(total * DUCKDB_MEMORY_SHARE / 2**20))}MiB"


def _open_duckdb(url: str, parsed, *, hold: bool = True, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Store:
    # Query parameters are DuckDB settings (duckdb:///x.duckdb?memory_limit=4GB&threads=2).
    settings = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    user_settings = dict(settings)
    if "memory_limit" not in settings and "max_memory" not in settings:
        default_limit = default_duckdb_memory_limit()
        if default_limit is not None:
            settings["memory_limit"] = default_limit
    path = duckdb_file(url)
    hold = hold or path is None
    try:
        if path is None:
            con = ibis.duckdb.connect(**settings)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            # hold=False: an in-memory database that ATTACHes the file per unit of work. Attaching
            # costs a few ms; creating a DuckDB instance per request costs ~20 ms.
            con = _wait_for_lock(lambda: ibis.duckdb.connect(str(path) if hold else ":memory:", **settings),
                                 path, busy_timeout)
    except StoreBusyError:
        raise
    except duckdb.Error as exc:
        if not user_settings:
            raise
        raise StoreError(f"{url}: DuckDB refused the settings {user_settings}: {exc}") from exc
    con.con.execute("SET TimeZone = 'UTC'")
    return Store(url=url, kind="duckdb", con=con, path=path, hold=hold, busy_timeout=busy_timeout)


def _open_pyspark(url: str, parsed) -> Store:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise StoreError(f"{url}: PySpark is not installed (pip install 'insightroi[spark]')") from None
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    master = query.pop("master", "local[2]")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python UDF workers (mapInArrow) must run this interpreter, which has pyspark and insightroi;
    # Spark's default is whatever "python3" is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName(query.pop("app", "insightroi"))
        .config("spark.ui.enabled", "false")
        # The stage progress bars write over the CLI's own output on stderr.
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", query.pop("shuffle_partitions", "4"))
    )
    warehouse = parsed.netloc + parsed.path
    if warehouse.strip("/"):
        # As for DuckDB: three slashes before a relative folder, four before an absolute one
        # (stripping every slash put pyspark:////tmp/wh under ./tmp/wh).
        folder = warehouse[1:] if warehouse.startswith("/") else warehouse
        builder = builder.config("spark.sql.warehouse.dir", str(Path(folder).resolve()))
    for k, v in query.items():
        builder = builder.config(k, v)
    session = builder.getOrCreate()
    _register_warehouse_tables(session)
    con = ibis.pyspark.connect(session)
    return Store(url=url, kind="pyspark", con=con)


def _local_warehouse(session: Any) -> Path | None:
    """The local warehouse folder of a Spark session without a metastore (None otherwise)."""
    if session.conf.get("spark.sql.catalogImplementation", "in-memory") != "in-memory":
        return None  # a Hive metastore remembers its tables
    raw = session.conf.get("spark.sql.warehouse.dir", "spark-warehouse")
    parsed = urlparse(raw)
    if parsed.scheme not in ("", "file"):
        return None  # a remote warehouse (s3a://, hdfs://) cannot be listed from here; use a metastore
    return Path(parsed.path if parsed.scheme else raw)


def _warehouse_folder(session: Any, name: str) -> Path | None:
    warehouse = _local_warehouse(session)
    return None if warehouse is None else warehouse / name


def _data_files(folder: Path) -> list[Path]:
    # Spark's bookkeeping files (_SUCCESS, .crc checksums) are no data.
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(("_", "."))]


def _register_folder(session: Any, name: str, columns: dict[str, str] | None = None) -> bool:
    """Register warehouse folder ``name`` as a table over its Parquet files; whether it was.

    Without ``columns`` (a user table, whose declaration lives in the program file) the schema
    is read from the files, so a folder without data files is left alone.
    """
    folder = _warehouse_folder(session, name)
    if folder is None or not folder.is_dir():
        return False
    if columns is None:
        if not _data_files(folder):
            return False
        session.catalog.createTable(name, path=str(folder.resolve()), source="parquet")
        return True
    from ibis.backends.pyspark.datatypes import PySparkSchema

    session.catalog.createTable(
        name, path=str(folder.resolve()), source="parquet", schema=PySparkSchema.from_ibis(ibis.schema(columns))
    )
    return True


def _register_warehouse_tables(session: Any) -> None:
    # Spark's default catalog lives in memory: the next process knows no tables although the
    # warehouse still holds their folders, so migrate() would create them again and fail with
    # LOCATION_ALREADY_EXISTS. Register each folder found as a table over its own Parquet files
    # (no Hive/Derby metastore, which would be a second single-process lock next to the data).
    warehouse = _local_warehouse(session)
    if warehouse is None or not warehouse.is_dir():
        return
    known = {t.name for t in session.catalog.listTables()}
    wanted: dict[str, dict[str, str] | None] = {name: spec.columns for name, spec in TABLES.items()}
    wanted[_VERSION_TABLE] = _VERSION_COLUMNS
    # User tables' columns are declared in the program file, which the store does not read.
    wanted.update({p.name: None for p in warehouse.iterdir() if p.is_dir() and is_user_table(p.name)})
    for name, columns in wanted.items():
        if name not in known:
            _register_folder(session, name, columns)


def _open_databricks(url: str, parsed) -> Store:
    """``databricks://<host>/<catalog>/<schema>?http_path=/sql/1.0/warehouses/<id>``.

    The access token comes from ``DATABRICKS_TOKEN`` (never from the URL, so it is not logged).
    """
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    parts = [p for p in parsed.path.split("/") if p]
    if not parsed.hostname or len(parts) != 2 or "http_path" not in query:
        raise StoreError(
            f"{url}: expected databricks://<workspace-host>/<catalog>/<schema>?http_path=/sql/1.0/warehouses/<id>"
        )
    token = os.environ.get("DATABRICKS_TOKEN")
    if not token:
        raise StoreError(f"{url}: set DATABRICKS_TOKEN to a personal access token or service-principal token")
    try:
        con = ibis.databricks.connect(
            server_hostname=parsed.hostname, http_path=query["http_path"], access_token=token,
            catalog=parts[0], schema=parts[1],
        )
    except ImportError:
        raise StoreError(f"{url}: install the Databricks extra (pip install 'ibis-framework[databricks]')") from None
    return Store(url=url, kind="databricks", con=con)


_OPENERS: dict[str, Callable[[str, Any], Store]] = {
    "duckdb": _open_duckdb,
    "pyspark": _open_pyspark,
    "databricks": _open_databricks,
}


class UnboundStore(Store):
    """A store with the schema but no data: its tables are unbound Ibis tables.

    Aggregations built on it compile to any SQL dialect without a connection, which is how the
    Databricks path is tested offline (``ibis.to_sql(expr, dialect="databricks")``).
    """

    def __init__(self, dialect: str = "databricks"):
        super().__init__(url=f"unbound://{dialect}", kind="unbound", con=None)
        self.dialect = dialect

    def table(self, name: str) -> ibis.Table:
        spec = TABLES.get(name) or self._user_specs.get(name)
        if spec is None:
            raise KeyError(f"no table {name!r}; tables: {sorted(TABLES) + sorted(self._user_specs)}")
        return ibis.table(ibis.schema(spec.columns), name=name)

    def user_tables(self) -> list[str]:
        return sorted(self._user_specs)

    def ensure_table(self, spec: TableSpec) -> TableSpec:
        """Declare user table ``spec`` (nothing is created: an unbound store has no data)."""
        if not is_user_table(spec.name):
            raise StoreError(f"{spec.name!r} is not a user table")
        self._user_specs[spec.name] = spec
        return spec

    def compile(self, expr: ibis.Expr) -> str:
        """The SQL that ``expr`` runs as, in this store's dialect."""
        return ibis.to_sql(expr, dialect=self.dialect)

    def schema_version(self) -> int:
        return SCHEMA_VERSION

    def migrate(self) -> int:
        return SCHEMA_VERSION

    def close(self) -> None:
        pass


def register_opener(scheme: str, opener: Callable[[str, Any], Store]) -> None:
    """Register how to open stores of URL scheme ``scheme`` (used by optional backends)."""
    _OPENERS[scheme] = opener


def open_store(
    url: str | os.PathLike | None = None, *, migrate: bool = True, hold: bool = True, busy_timeout: float | None = None,
) -> Store:
    """Open the store at ``url`` and make sure its tables exist.

    Parameters
    ----------
    url : str or path, optional
        ``duckdb:///path/insightroi.duckdb`` (the default, relative to the working directory;
        four slashes for an absolute path), ``duckdb://:memory:``, ``pyspark:///warehouse-dir``,
        or ``databricks://...``. A bare path is taken as a DuckDB file. Query parameters of a
        DuckDB URL are DuckDB settings (``?memory_limit=4GB&threads=2``); without one, a DuckDB
        store's ``memory_limit`` is :func:`default_duckdb_memory_limit` (a fifth of the machine's
        memory, not DuckDB's 80%). Of a Spark URL, Spark configuration. Defaults to the
        ``INSIGHTROI_STORE`` environment variable, else ``duckdb:///insightroi.duckdb``.
    migrate : bool
        Create missing tables and apply migrations (default True).
    hold : bool
        Keep a DuckDB file open, and so its single-writer lock taken, until :meth:`Store.close`
        (default). ``False`` attaches the file only inside ``with store.attached():`` blocks, so
        other processes (CLI commands next to ``insightroi serve``) can use it in between.
        Ignored by other backends, which have no file lock.
    busy_timeout : float, optional
        Seconds to wait, retrying, while another process holds the DuckDB file's lock; default
        ``$INSIGHTROI_BUSY_TIMEOUT``, else 5.

    Raises
    ------
    StoreBusyError
        Another process held the DuckDB file for longer than ``busy_timeout``; the one-line
        message names the file, the process id and its command line.
    StoreError
        For an unknown scheme, a missing optional backend, or a store newer than this version.
    """
    url = str(url or os.environ.get("INSIGHTROI_STORE") or DEFAULT_URL)
    if "://" not in url:
        url = "duckdb:///" + url
    parsed = urlparse(url)
    opener = _OPENERS.get(parsed.scheme)
    if opener is None:
        raise StoreError(f"{url}: unknown store scheme {parsed.scheme!r}; known: {sorted(_OPENERS)}")
    if opener is _open_duckdb:
        store = _open_duckdb(url, parsed, hold=hold, busy_timeout=_busy_timeout(busy_timeout))
    else:
        store = opener(url, parsed)
    if migrate:
        store.migrate()
    return store


# version -> function upgrading a store from that version to the next.
_MIGRATIONS: dict[int, Callable[[Store], None]] = {}


def copy_store(source: Store, target: Store, tables: list[str] | None = None) -> dict[str, int]:
    """Copy every row of ``tables`` (default: all) from ``source`` to ``target`` through Arrow.

    Used to move an embedded DuckDB store to Spark (and to test that both give equal results).
    The default copies the source's user tables too, creating them in ``target``. Returns rows
    copied per table.
    """
    copied = {}
    for name in tables or [*TABLES, *source.user_tables()]:
        if is_user_table(name):
            target.ensure_table(source.spec(name))
        data = source.table(name).to_pyarrow()
        copied[name] = target.append(name, data) if data.num_rows else 0
    return copied
