"""Chromium's processes never outlive a run: each run marks the processes it starts, ends their
whole tree when it finishes, and the next run ends and reports what a killed run left behind.
Also the memory of a process tree, for the engine's memory bound."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..archive import Archive

PID_FILE = "chromium.pids"
RUN_MARK = "--evarchive-run="  # Chromium ignores unknown switches; it names our processes


def processes_marked(mark: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if mark.encode() in cmdline:
            found.append(int(entry.name))
    return found


def with_descendants(pids: list[int]) -> list[int]:
    """``pids`` and every process below them (Chromium's zygotes and renderers do not carry
    the run mark on their command lines)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, frontier = list(pids), list(pids)
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.append(child)
                frontier.append(child)
    return found


def tree_memory_mb(root: int) -> float:
    """Proportional set size (shared pages divided among their sharers) of ``root`` and every
    process below it, in MB: what the tree really holds, unlike a sum of RSS."""
    return sum(_pss_kb(pid) or 0 for pid in with_descendants([root])) / 1024


def _pss_kb(pid: int) -> int | None:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)


def _rss_kb(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return None


# A PSS reading walks the process's page tables: 1-6 ms per Chromium process, about 50 ms for the
# tree of six loading pages, which at one sample a second cost several percent of a core. Its
# resident size (/proc/PID/statm, a counter) costs a hundredth of that. A process whose resident
# size has moved less than REREAD_KB since its last PSS reading keeps that reading, moved by the
# same amount; every reading is renewed after MAX_AGE s (its shared pages' other sharers change).
REREAD_KB = 8192
MAX_AGE = 5.0


class TreeMemory:
    """``tree_memory_mb`` for a watchdog that asks every second: the same sum, each process's PSS
    read again only once it has moved (or aged)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.pss_reads = 0  # how many PSS readings were taken (the cost this saves)
        self._readings: dict[int, tuple[int, int, float]] = {}  # pid: (RSS kB, PSS kB, when)
        self._lock = threading.Lock()  # asked from worker threads

    def mb(self, root: int) -> float:
        with self._lock:
            now = self.clock()
            total, seen = 0, {}
            for pid in with_descendants([root]):
                rss = _rss_kb(pid)
                if rss is None:
                    continue
                last = self._readings.get(pid)
                if last is not None and abs(rss - last[0]) < REREAD_KB and now - last[2] < MAX_AGE:
                    seen[pid] = last
                    total += last[1] + rss - last[0]
                    continue
                pss = _pss_kb(pid)
                if pss is None:
                    continue
                self.pss_reads += 1
                seen[pid] = (rss, pss, now)
                total += pss
            self._readings = seen  # ended processes are forgotten
            return total / 1024


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def reap_orphans(archive: Archive) -> list[int]:
    """Chromium processes a killed earlier run left behind: found by their run mark, ended."""
    pid_file = archive.locks_dir / PID_FILE
    try:
        marks = [line.strip() for line in pid_file.read_text().splitlines() if line.strip()]
    except OSError:
        return []
    orphans: list[int] = []
    for mark in marks:
        orphans += processes_marked(RUN_MARK + mark)
    kill_all(with_descendants(orphans))
    pid_file.unlink(missing_ok=True)
    return orphans


def forget_mark(pid_file: Path, mark: str) -> None:
    try:
        lines = [line for line in pid_file.read_text().splitlines() if line.strip() and line.strip() != mark]
        if lines:
            pid_file.write_text("\n".join(lines) + "\n")
        else:
            pid_file.unlink(missing_ok=True)
    except OSError:
        pass
