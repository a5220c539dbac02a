"""The options of every command that talks to the network, declared once.

``@network_options(...)`` adds the options to a command's signature (Typer reads it through
``inspect.signature``, which honours ``__signature__``) and hands the command one
``NetworkOptions``; ``capture_settings``/``check_settings`` turn that into the library's settings
objects, which validate every value themselves (``UsageError``, exit 2). ``@capture_run_options``
does the same for what the two capturing commands (capture, archive) share beyond the network:
where they write, how they print, and what the run ends with (witness, timestamp).

Defaults that legitimately differ between commands (a check gives a source 120 s, a capture
300 s) are passed to the decorator; the help text is the same wherever the option is the same.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import UsageError
from .common import ArchiveOpt, JsonOpt, QuietOpt, TsaOpt, WitnessOpt

if TYPE_CHECKING:  # the engines are imported only when a command runs (see capture_settings)
    from ..capture import CaptureSettings
    from ..check.settings import CheckSettings


@dataclass(frozen=True)
class Declared:
    """One option: its parameter name, type, library default and help (the only copy)."""

    name: str
    type: Any
    default: Any
    help: str = ""
    metavar: str | None = None

    @classmethod
    def shared(cls, name: str, annotated: Any, default: Any) -> Declared:
        """An option whose Typer declaration (``Annotated``, help included) lives in ``common``
        because commands outside this module take it too."""
        return cls(name, annotated, default)


# What one fetch uses: every command that fetches a URL takes these.
CONNECTION = (
    Declared("timeout", float, 300.0,
             "Total seconds for one URL (one capture, or one check), redirects and retries included."),
    Declared("connect_timeout", float, 15.0, "Seconds to connect."),
    Declared("read_timeout", float, 30.0, "Seconds of silence before giving up a read."),
    Declared("max_body", int, 1 << 30,
             "Bytes kept per body; longer bodies are kept up to this and recorded as truncated."),
    Declared("retries", int, 3, "Retries for connection errors, 5xx and 429."),
    Declared("user_agent", str | None, None, "User-Agent header (default names evarchive)."),
    Declared("proxy", str | None, None, "Proxy URL: http://, https:// or socks5://."),
    Declared("insecure", bool, False,
             "Fetch even when the TLS certificate is invalid (a capture records that in its provenance)."),
    Declared("ca_file", Path | None, None, "Trust these CA certificates (PEM)."),
    Declared("resolve", list[str] | None, None,
             "Connect to ADDRESS:PORT for HOST, without touching /etc/hosts (repeatable).",
             metavar="HOST:ADDRESS:PORT"),
)

# What a run over many URLs adds: its limits, then the WARC files it writes and its processes.
LIMITS = (
    Declared("concurrency", int, 48, "Total simultaneous requests."),
    Declared("per_host", int, 6, "Simultaneous requests per host (browsers use 6)."),
)
RUN = (
    Declared("warc_size", int, 1 << 30, "Start a new WARC file past this size."),
    Declared("workers", int | None, None,
             "Processes for large runs (default: one per core, at most 2; hosts are split between them)."),
)

# How a page is captured: only the commands that capture choose the engine.
ENGINE = (
    Declared("engine", str | None, None,
             "browser: load each page in Chromium and record every sub-resource, with screenshots, PDF "
             "and rendered page; http: fetch the document only; auto (default, or EVARCHIVE_ENGINE): "
             "the browser when Chromium is found.", metavar="auto|browser|http"),
    Declared("chromium", str | None, None,
             "The Chromium executable (default: EVARCHIVE_CHROMIUM, then chromium on PATH).",
             metavar="PATH"),
)

NETWORK = LIMITS + CONNECTION + RUN  # every command that fetches many URLs: capture, archive, check

# The CaptureSettings field each option sets, where the names differ.
_FIELD = {"timeout": "total_timeout", "warc_size": "max_warc_size"}


@dataclass(frozen=True)
class NetworkOptions:
    """The network options one command was given, by parameter name."""

    values: dict[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def capture_settings(self, base: CaptureSettings) -> CaptureSettings:
        """``base`` with every given option applied; the settings object
        validates the result (``UsageError``, exit 2)."""
        changes: dict[str, Any] = {}
        for name, value in self.values.items():
            if name in ("engine", "chromium") or (name == "user_agent" and value is None):
                continue
            if name == "ca_file":
                value = str(value) if value else None
            elif name == "resolve":
                value = parse_resolve(value or [])
            changes[_FIELD.get(name, name)] = value
        return replace(base, **changes)


def parse_resolve(values: list[str]) -> dict[str, tuple[str, int]]:
    mapping = {}
    for value in values:
        try:
            host, address, port = value.rsplit(":", 2)
            mapping[host] = (address, int(port))
        except ValueError:
            raise UsageError(f"--resolve wants HOST:ADDRESS:PORT, not {value!r}") from None
    return mapping


# What capture and archive share beyond the network: the run's archive and output, and what it
# ends with. Declared in ``common`` (other commands take --archive, --json, --quiet and --tsa too).
CAPTURE_RUN = (
    Declared.shared("witness", WitnessOpt, None),
    Declared.shared("tsa", TsaOpt, None),
    Declared.shared("archive", ArchiveOpt, None),
    Declared.shared("as_json", JsonOpt, False),
    Declared.shared("quiet", QuietOpt, False),
)


@dataclass(frozen=True)
class CaptureRunOptions:
    """The ``CAPTURE_RUN`` options one capturing command was given."""

    witness: str | None
    tsa: list[str] | None
    archive: Path | None
    as_json: bool
    quiet: bool


def _parameter(option: Declared, default: Any) -> inspect.Parameter:
    annotation = option.type if option.help == "" else Annotated[
        option.type, typer.Option(help=option.help, metavar=option.metavar)]
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _inject(declared: list[Declared], defaults: dict[str, Any], into: str,
            build: Callable[[dict[str, Any]], Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add ``declared`` to a command's signature (before its own ``--archive``, if it has one) and
    hand the command their values as one argument named ``into``, made by ``build``."""
    unknown = set(defaults) - {o.name for o in declared}
    if unknown:
        raise TypeError(f"no such option: {sorted(unknown)}")

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != into]
        at = next((i for i, p in enumerate(own) if p.name == "archive"), len(own))
        added = [_parameter(o, defaults.get(o.name, o.default)) for o in declared]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            kwargs[into] = build({o.name: kwargs.pop(o.name) for o in declared})
            return command(**kwargs)

        run.__signature__ = inspect.Signature([*own[:at], *added, *own[at:]])  # type: ignore[attr-defined]
        return run

    return decorate


def network_options(*groups: tuple[Declared, ...], **defaults: Any) -> Callable[[Callable[..., Any]],
                                                                                Callable[..., Any]]:
    """Give a command the options of ``groups`` (before its ``--archive``), with per-command
    ``defaults``; the command receives them as one ``net: NetworkOptions`` argument."""
    return _inject([o for group in groups for o in group], defaults, "net", NetworkOptions)


def capture_run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a capturing command the ``CAPTURE_RUN`` options as one ``run: CaptureRunOptions``."""
    return _inject(list(CAPTURE_RUN), {}, "run", lambda values: CaptureRunOptions(**values))(command)


def capture_settings(net: NetworkOptions) -> CaptureSettings:
    """The settings of a capture run (capture, archive)."""
    from ..capture import CaptureSettings  # lazy: capture pulls httpx, 160 ms of start-up

    return net.capture_settings(CaptureSettings())


def fetch_settings(net: NetworkOptions) -> CaptureSettings:
    """The settings of one fetch the way a check makes it (diff --live)."""
    from ..check.settings import check_capture_settings  # lazy: the check engine costs 200 ms of start-up

    return net.capture_settings(check_capture_settings())


def check_settings(net: NetworkOptions, strikes: int, min_interval: str, drift_threshold: float,
                   head: str, probe: bool, evidence: str, recapture: bool) -> CheckSettings:
    """The settings of a check run; ``CheckSettings`` validates them (``UsageError``)."""
    from ..check.settings import CheckSettings  # lazy: 200 ms, see above
    from ..check.strikes import StrikeRule, parse_interval

    try:
        interval = parse_interval(min_interval)
    except ValueError as exc:
        raise UsageError(f"--min-interval: {exc}") from None
    return CheckSettings(network=fetch_settings(net), rule=StrikeRule(strikes, interval),
                         drift_threshold=drift_threshold, head=head, probe=probe,
                         evidence=evidence, recapture=recapture)
