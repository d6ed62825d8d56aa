"""Helpers the benchmarks share for warm starts and for timing whole aido processes fairly.

Not a benchmark itself (bench_run.py and bench_throughput.py import it; run as scripts, this
directory is their sys.path[0]). Standard library only: it reads the sandbox's files as a user
could (store/pool.py describes the warm pool's directory, run/collect.py the summary's ``start``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POOL_WAIT = 15.0  # seconds to wait for a drained pool to be full and quiet again
POOL_POLL = 0.02  # seconds between two looks at the pool's directory


class PoolError(Exception):
    """A warm pool could not be read or the runs' evidence did not say how they started."""


# -- bytecode -------------------------------------------------------------------------------------


@contextlib.contextmanager
def bytecode_cached() -> Iterator[dict[str, Any]]:
    """Compile aido's package (``python -m compileall -q``) and unset ``PYTHONDONTWRITEBYTECODE``
    in this process's environment, which every aido process (and the sandbox's background
    keeper) inherits, so that none of them compiles aido's sources first: a user's install has
    its bytecode cached, and compiling costs more CPU than most of what is measured. Yields
    notes for the JSON document; restores the environment afterwards."""
    spec = importlib.util.find_spec("aido")
    if spec is None or not spec.submodule_search_locations:
        raise PoolError("aido is not importable by this interpreter (set PYTHONPATH or install it)")
    package = Path(next(iter(spec.submodule_search_locations))).resolve()
    removed = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(package)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise PoolError(f"compileall {package} failed:\n{(done.stderr or done.stdout).strip()[-2000:]}")
        notes: dict[str, Any] = {"aido_package": str(package), "bytecode_compiled": True}
        notes["PYTHONDONTWRITEBYTECODE"] = None  # what every aido process has
        notes["PYTHONDONTWRITEBYTECODE_unset_by_benchmark"] = removed is not None
        yield notes
    finally:
        if removed is not None:
            os.environ["PYTHONDONTWRITEBYTECODE"] = removed


# -- the pool -------------------------------------------------------------------------------------


def _entries(folder: Path) -> int:
    try:
        return sum(1 for name in os.listdir(folder) if not name.startswith("."))
    except FileNotFoundError:
        return 0


@dataclass(frozen=True)
class PoolState:
    ready: int
    starting: int
    claimed: int  # used by a run and not yet removed by the keeper

    def full_and_quiet(self, size: int) -> bool:
        return self.ready >= size and self.starting == 0 and self.claimed == 0


def pool_state(sandbox_root: Path) -> PoolState:
    warm = sandbox_root / "warm"
    return PoolState(_entries(warm / "ready"), _entries(warm / "starting"), _entries(warm / "claimed"))


def wait_for_pool(sandbox_root: Path, size: int, timeout: float = POOL_WAIT) -> tuple[bool, float]:
    """Wait until the pool has ``size`` ready containers and the keeper is idle (nothing
    starting, every used container removed), so that the next sample is warm and none shares
    the engine with the keeper's work; (whether it got there, seconds waited)."""
    start = time.perf_counter()
    while True:
        if pool_state(sandbox_root).full_and_quiet(size):
            return True, time.perf_counter() - start
        if time.perf_counter() - start >= timeout:
            return False, time.perf_counter() - start
        time.sleep(POOL_POLL)


# -- how runs started -----------------------------------------------------------------------------


def run_ids(sandbox_root: Path) -> set[str]:
    runs = sandbox_root / "runs"
    try:
        return {name for name in os.listdir(runs) if name.startswith("run-")}
    except FileNotFoundError:
        return set()


@dataclass(frozen=True)
class Start:
    run_id: str
    mode: str  # "warm" or "cold", from the run's summary.json
    reason: str | None  # a cold start's start_detail.reason


def starts(sandbox_root: Path, ids: Iterable[str]) -> list[Start]:
    """How each of these runs started, from its evidence (summary.json ``start``)."""
    found = []
    for run_id in sorted(ids):
        path = sandbox_root / "runs" / run_id / "summary.json"
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PoolError(f"cannot read {path}: {exc}") from None
        mode = summary.get("start")
        if mode not in ("warm", "cold"):
            raise PoolError(f"{path} has no start record (start: {mode!r})")
        detail = summary.get("start_detail") or {}
        found.append(Start(run_id, mode, detail.get("reason")))
    return found


def start_counts(found: Iterable[Start]) -> dict[str, Any]:
    """{"warm": n, "cold": n, "cold_reasons": {reason: n}} for a JSON document."""
    warm = cold = 0
    reasons: dict[str, int] = {}
    for start in found:
        if start.mode == "warm":
            warm += 1
        else:
            cold += 1
            reason = start.reason or "no reason recorded (as in a sandbox without a pool)"
            reasons[reason] = reasons.get(reason, 0) + 1
    return {"warm": warm, "cold": cold, "cold_reasons": reasons}
