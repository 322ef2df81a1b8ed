"""Run a simulation study's independent seeds on both cores (test helper).

`make test` runs one test at a time, so a study looping over seeds leaves the second core idle
(the suite's load average is about 1 on the 2-core CI machine). Seeds are independent and carry
their own random streams, so splitting them over processes changes no figure.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

__all__ = ["map_in_processes"]


def map_in_processes(fn: Callable[[Any], Any], items: Sequence[Any], *, workers: int | None = None,
                     chunksize: int = 1) -> list[Any]:
    """``[fn(item) for item in items]``, computed in up to ``workers`` spawned processes.

    Parameters
    ----------
    fn : callable
        A module-level function (the spawned processes import its module by name).
    items : sequence
        Its arguments; the results come back in this order.
    workers : int, optional
        Processes; default ``min(2, cpu count)``. One runs in this process.
    chunksize : int
        Items sent to a process at a time.

    Returns
    -------
    list
        The results, in the order of ``items``.
    """
    workers = workers or min(2, os.cpu_count() or 1)
    if workers <= 1 or len(items) < 2:
        return [fn(item) for item in items]
    # spawn, not fork: the test process holds DuckDB and possibly a JVM's threads, and a forked
    # child of a threaded process can block on a lock one of them held.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(fn, items, chunksize=chunksize))
