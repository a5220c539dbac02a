"""Spread a large capture or check run over worker processes, one per core.

httpx and the WARC writer are CPU-bound in Python: one process tops out well below what the
network and a polite per-host limit allow on a run of a thousand pages. Hosts (never single
URLs) are divided between workers, so the per-host limit still holds across the whole run,
and each worker owns its WARC writer, so no two processes ever share a file.

Workers are forked (no re-import, no pickling of settings). A forked child never touches the
parent's SQLite connection: it opens its own, and leaves through ``os._exit`` as
multiprocessing children do, so the inherited one is never finalised. On Linux a worker also
asks to be killed with its parent, so a ``kill -9`` of the command leaves no orphan capturing on.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing
import os
import queue as queue_module
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .errors import CouldNotRunError, EvarchiveError
from .urls import host_of

MIN_URLS_PER_WORKER = 100  # below this, starting workers costs more than it saves
PR_SET_PDEATHSIG = 1
T = TypeVar("T")


def worker_count(settings_workers: int | None, urls: list[str]) -> int:
    """How many processes this run deserves: one per core, enough URLs each, at least 2 hosts."""
    wanted = settings_workers if settings_workers is not None else min(2, os.cpu_count() or 1)
    hosts = len({host_of(u) for u in urls})
    return max(1, min(wanted, hosts, len(urls) // MIN_URLS_PER_WORKER))


def split_by_host(items: list[T], workers: int, url_of: Callable[[T], str] | None = None
                  ) -> list[list[T]]:
    """Whole hosts to each worker, the biggest first to the least loaded (greedy balance).
    ``items`` are URLs, or anything ``url_of`` gives the URL of (a source row)."""
    by_host: dict[str, list[T]] = defaultdict(list)
    for item in items:
        by_host[host_of(url_of(item) if url_of else item)].append(item)  # type: ignore[arg-type]
    shares: list[list[T]] = [[] for _ in range(workers)]
    for _host, host_items in sorted(by_host.items(), key=lambda entry: -len(entry[1])):
        min(shares, key=len).extend(host_items)
    return [share for share in shares if share]


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: an orphan finishes its share and exits
        pass


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Tune the cyclic garbage collector for a long network run, and restore it after.

    What exists when the run starts (imports, the catalogue, inherited state) never becomes
    garbage during it: freezing it spares the collector from walking it again and again; and a
    page's many short-lived objects need not trigger a collection every 700 allocations.
    Worth about a tenth of the CPU of a thousand-page capture or check.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


class ResultBatch:
    """Outcomes go to the parent a few at a time: one pickle per outcome costs the parent CPU
    that the workers need."""

    def __init__(self, results: Any, interval: float = 0.1) -> None:
        self.results = results
        self.interval = interval
        self.items: list[Any] = []
        self.last = time.monotonic()

    def add(self, outcome: Any) -> None:
        self.items.append(outcome)
        if time.monotonic() - self.last >= self.interval:
            self.flush()

    def send(self, items: list[Any]) -> None:
        """Items that must reach the parent now, with any waiting ones."""
        self.items.extend(items)
        self.flush()

    def flush(self) -> None:
        if self.items:
            self.results.put(("results", self.items))
            self.items = []
        self.last = time.monotonic()


def _worker(work: Callable[[Any, ResultBatch], None], share: Any, what: str, results: Any) -> None:
    _die_with_parent()
    batch = ResultBatch(results)
    try:
        with fewer_collections():
            work(share, batch)
        batch.flush()
    except EvarchiveError as exc:
        batch.flush()  # what the worker committed before it stopped reaches the parent first
        results.put(("error", exc))
        return
    except KeyboardInterrupt:
        results.put(("interrupted", None))
        return
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        results.put(("error", CouldNotRunError(f"a {what} worker failed: {type(exc).__name__}: {exc}")))
        return
    results.put(("done", None))


def run_in_workers(shares: list[Any], work: Callable[[Any, ResultBatch], None],
                   on_results: Callable[[list[Any]], None], what: str, died: str) -> None:
    """Fork one worker per share, each running ``work(share, batch)``; every batch the workers
    send is handed to ``on_results`` in the parent as it arrives. Raises the first worker's
    error (or ``KeyboardInterrupt``) once every worker has ended; ``died`` is the advice when a
    worker vanished without a word."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    procs = [context.Process(target=_worker, args=(work, share, what, results), daemon=True)
             for share in shares]
    for proc in procs:
        proc.start()
    # No join on the way out of an exception (Ctrl-C): a worker may be blocked writing to a
    # queue nobody reads any more; daemon workers are ended when this process exits.
    failure = _collect(procs, results, on_results, f"a {what} worker died without a word; {died}")
    for proc in procs:
        proc.join()
    if failure is not None:
        raise failure


def _collect(procs: list[Any], results: Any, on_results: Callable[[list[Any]], None],
             died: str) -> BaseException | None:
    finished = 0
    failure: BaseException | None = None
    while finished < len(procs):
        try:
            kind, payload = results.get(timeout=0.5)
        except queue_module.Empty:
            if all(not p.is_alive() for p in procs) and results.empty():
                failure = failure or CouldNotRunError(died)
                break
            continue
        if kind == "results":
            on_results(payload)
            continue
        finished += 1
        if kind == "error":
            failure = failure or payload
        elif kind == "interrupted":
            failure = failure or KeyboardInterrupt()
    return failure


def threads_other_than_main() -> bool:
    """Forking with other threads alive can deadlock the child; callers fall back to one process."""
    return threading.active_count() > 1
