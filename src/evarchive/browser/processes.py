"""Chromium's processes never outlive a run: each run marks the processes it starts, ends their
whole tree when it finishes, and the next run ends and reports what a killed run left behind.
Also the memory of a process tree, for the engine's memory bound."""

from __future__ import annotations

import os
import signal
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
    total = 0
    for pid in with_descendants([root]):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)
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
