"""Injectable time for tests: nothing in the suite sleeps for real or reads the wall clock."""

from __future__ import annotations

import datetime as dt

T0 = dt.datetime(2030, 1, 1, 2, 0, tzinfo=dt.UTC)  # a nightly cron run at 02:00


class FakeClock:
    """A clock that moves only when a test says so."""

    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


class NoSleep:
    """Records the waits the engine asked for, and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class ManualTime:
    """Monotonic seconds that pass only when slept through: for synchronous polling loops."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
