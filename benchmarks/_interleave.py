"""Interleaved timing of ours against a peer: A B A B ..., wall and CPU time, equal thread counts.

Timing ours once and the peer once lets a neighbour's burst of load land on one side only; on a
shared 2-core machine that moved single-shot ratios by 30% between runs. Alternating the two
within one process, pinning both to the same number of BLAS / OpenMP / numba threads, and
reporting the median ratio with its min and max makes the spread visible instead of hidden.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Pairs", "interleave", "pin_threads"]


def pin_threads(n: int = 1):
    """Limit every native thread pool (BLAS, OpenMP, numba) of this process to ``n`` threads.

    Parameters
    ----------
    n : int
        Threads each pool may use; the same for ours and the peer.

    Returns
    -------
    threadpoolctl.threadpool_limits
        The active limit (a context manager; it also works when simply kept alive).
    """
    from threadpoolctl import threadpool_limits

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except (ImportError, ValueError):
        pass
    return threadpool_limits(limits=n)


@dataclass
class Pairs:
    """Per-pair timings of ours and the peer, and the outputs of the last call of each."""

    ours_wall: list[float] = field(default_factory=list)
    ours_cpu: list[float] = field(default_factory=list)
    peer_wall: list[float] = field(default_factory=list)
    peer_cpu: list[float] = field(default_factory=list)
    ours_out: Any = None
    peer_out: Any = None
    #: "cpu" (this process's CPU time: single-threaded work on a shared machine) or "wall" (work
    #: spread over DuckDB's threads or forked workers, which this process's CPU clock misses).
    basis: str = "cpu"

    @property
    def ratios(self) -> list[float]:
        """Peer time over ours on the chosen basis, per pair (above 1: we are faster)."""
        ours, peer = (self.ours_cpu, self.peer_cpu) if self.basis == "cpu" else (self.ours_wall, self.peer_wall)
        return [p / o for p, o in zip(peer, ours) if o > 0]

    @property
    def ours_s(self) -> float:
        """Median seconds of ours on the chosen basis."""
        return statistics.median(self.ours_cpu if self.basis == "cpu" else self.ours_wall)

    @property
    def peer_s(self) -> float:
        """Median seconds of the peer on the chosen basis."""
        return statistics.median(self.peer_cpu if self.basis == "cpu" else self.peer_wall)

    @property
    def ratio(self) -> float:
        """Median of the per-pair ratios."""
        return statistics.median(self.ratios)

    def describe(self) -> str:
        """The ratio's median, min and max, and the median wall times, for a table note."""
        r = self.ratios
        return (f"{self.basis.upper() if self.basis == 'cpu' else 'wall'} ratio median {statistics.median(r):.3g} (min {min(r):.3g}, max {max(r):.3g}) over {len(r)} "
                f"interleaved pairs; wall median ours {statistics.median(self.ours_wall):.3g} s, "
                f"peer {statistics.median(self.peer_wall):.3g} s")


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def interleave(ours: Callable[[], Any], peer: Callable[[], Any], *, pairs: int = 5, warmup: bool = True,
               basis: str = "cpu") -> Pairs:
    """Time ``ours`` and ``peer`` alternately, ``pairs`` times each.

    Parameters
    ----------
    ours, peer : callable
        Zero-argument functions doing the same work.
    pairs : int
        Number of A B pairs (at least 5 for the table).
    warmup : bool
        Call each once untimed first (imports, JIT compilation, caches), in the same order.
    basis : {"cpu", "wall"}
        What the ratio compares; both are recorded either way.

    Returns
    -------
    Pairs
        Wall and CPU seconds per call, and the last output of each side.
    """
    if basis not in ("cpu", "wall"):
        raise ValueError(f"basis must be 'cpu' or 'wall', got {basis!r}")
    out = Pairs(basis=basis)
    if warmup:
        ours()
        peer()
    for i in range(pairs):
        # Alternate which side goes first so neither always runs on a cache the other warmed.
        order = ((ours, "ours"), (peer, "peer")) if i % 2 == 0 else ((peer, "peer"), (ours, "ours"))
        for fn, side in order:
            res, wall, cpu = _timed(fn)
            getattr(out, f"{side}_wall").append(wall)
            getattr(out, f"{side}_cpu").append(cpu)
            setattr(out, f"{side}_out", res)
    return out
