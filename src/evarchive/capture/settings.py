"""Every knob of a capture run, validated once for every command that talks to the network."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .. import __version__, client
from ..errors import UsageError

DEFAULT_USER_AGENT = f"evarchive/{__version__} (evidence archiver; +python-httpx)"

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], dt.datetime]


def _utc_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class CaptureSettings:
    """Every knob of a capture run; the defaults are no more aggressive than a browser."""

    concurrency: int = 48
    per_host: int = 6
    connect_timeout: float = 15.0
    read_timeout: float = 30.0
    total_timeout: float = 300.0
    max_body: int = 1 << 30
    retries: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_retry_after: float = 300.0
    max_redirects: int = 20
    user_agent: str = DEFAULT_USER_AGENT
    proxy: str | None = None
    insecure: bool = False
    ca_file: str | None = None
    resolve: dict[str, tuple[str, int]] = field(default_factory=dict)
    max_warc_size: int = 1 << 30
    commit_every: int = 64
    commit_interval: float = 0.25
    workers: int | None = None  # processes for large runs; None: one per core (at most 2)
    sleep: Sleep = field(default=asyncio.sleep, repr=False)
    clock: Clock = field(default=_utc_clock, repr=False)

    def __post_init__(self) -> None:
        """One validation for every command that talks to the network (capture, archive, check,
        diff): a bad value is a usage error before anything is fetched or written."""
        at_least_one = {"--concurrency": self.concurrency, "--per-host": self.per_host,
                        "--workers": 1 if self.workers is None else self.workers, "--warc-size": self.max_warc_size}
        positive = {"--timeout": self.total_timeout, "--connect-timeout": self.connect_timeout,
                    "--read-timeout": self.read_timeout}
        problems = [f"{name} must be at least 1" for name, value in at_least_one.items() if value < 1]
        problems += [f"{name} must be more than 0 seconds" for name, value in positive.items() if value <= 0]
        problems += [f"{name} must not be negative" for name, value in
                     {"--retries": self.retries, "--max-body": self.max_body}.items() if value < 0]
        if problems:
            raise UsageError("; ".join(problems))
        client.validate_proxy(self.proxy)

    def public(self) -> dict[str, Any]:
        """Settings as written to warcinfo and the run row: no credentials, no callables."""
        data = {k: v for k, v in asdict(self).items() if k not in ("sleep", "clock", "proxy")}
        data["proxy"] = proxy_kind(self.proxy)
        data["resolve"] = {k: list(v) for k, v in self.resolve.items()}
        return data


def proxy_kind(proxy: str | None) -> str | None:
    """Only the kind of proxy goes into provenance: never its address or credentials."""
    return urlsplit(proxy).scheme.lower() if proxy else None
