"""Which engine captures, and the Chromium it runs: its discovery, its switches, the knobs of
the browser engine (each written to the provenance)."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import CouldNotRunError, InputError

ENGINES = ("auto", "browser", "http")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = ("install Chromium (Debian/Ubuntu: `apt-get install chromium`; macOS: "
                "`brew install --cask chromium`) or point --chromium / EVARCHIVE_CHROMIUM at it")
NO_BROWSER_LINE = ("Chromium not found: captured with the HTTP engine only, so no screenshot, PDF, "
                   "rendered page or sub-resources were captured; " + INSTALL_HINT)

# Switches that keep the browser's own traffic (updates, safe browsing, metrics, sync, field
# trials) out of the evidence and away from the network, and keep every exchange on HTTP/1.1
# through the recording proxy.
# The last three features cost CPU and nothing the page shows: headless Chromium gives every
# context a window whose omnibox popups are WebUI pages, each in a renderer of its own, and keeps a
# spare renderer per context that a context used for one page never needs. Without them a capture
# starts one renderer instead of three (about half of Chromium's CPU per page on the benchmark).
OUR_DISABLED_FEATURES = (
    "OptimizationHints", "MediaRouter", "Translate", "AutofillServerCommunication",
    "CertificateTransparencyComponentUpdater", "InterestFeedContentSuggestions",
    "NetworkTimeServiceQuerying", "DialMediaRouteProvider",
    "WebUIOmniboxPopup", "WebUIOmniboxAimPopup", "SpareRendererForSitePerProcess",
)
# Playwright passes a --disable-features switch of its own, and Chromium keeps only the last copy
# of a switch: ours would silently switch its features back on. Among them HttpsUpgrades (a cited
# http:// URL would be tried over https:// first, an exchange the citation never asked for) and
# requests to the search engine at start-up. So ours carries them too (Playwright 1.65's list).
PLAYWRIGHT_DISABLED_FEATURES = (
    "AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose", "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable", "LensOverlay", "MediaRouter", "PaintHolding",
    "ThirdPartyStoragePartitioning", "AvoidCorsURLLoaderRestartOnRedirect", "TcpPortRandomizationWin",
    "OptimizationHints", "NetworkTimeServiceQuerying", "AimEnabled", "PreconnectToSearch",
    "msForceBrowserSignIn", "msEdgeUpdateLaunchServicesPreferredVersion",
)
DISABLED_FEATURES = tuple(dict.fromkeys(OUR_DISABLED_FEATURES + PLAYWRIGHT_DISABLED_FEATURES))
CHROMIUM_ARGS = [
    "--disable-quic", "--disable-http2", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-first-run",
    "--metrics-recording-only", "--disable-field-trial-config", "--disable-breakpad",
    "--safebrowsing-disable-auto-update", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--no-pings",
    "--disable-features=" + ",".join(DISABLED_FEATURES),
    "--proxy-bypass-list=<-loopback>", "--dns-prefetch-disable",
]


@dataclass
class BrowserSettings:
    """The browser engine's own knobs; every one is written to the provenance."""

    chromium: str = ""
    # Pages at once, while memory allows (run.ADMIT_SHARE): a page keeps a core busy about half of
    # its time and waits the rest (network, scroll steps, quiet window), so 4 pages fill 2 cores;
    # 6 keep them filled while pages start and end at different times.
    tabs: int = 6
    viewport_width: int = 1280
    viewport_height: int = 800
    device_scale: float = 1.0
    load_timeout: float = 30.0
    quiet_ms: int = 500
    quiet_timeout: float = 10.0
    scroll_timeout: float = 10.0
    max_height: int = 20000
    artefact_timeout: float = 30.0
    max_memory_mb: int = 1536  # PSS of evarchive's whole process tree, Chromium included

    def public(self) -> dict[str, Any]:
        return asdict(self)


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium executable: --chromium, EVARCHIVE_CHROMIUM, then PATH."""
    wanted = explicit or os.environ.get("EVARCHIVE_CHROMIUM")
    if wanted:
        path = shutil.which(wanted) or (wanted if os.access(wanted, os.X_OK) else None)
        return path
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return None


@dataclass
class EngineChoice:
    engine: str  # browser or http
    chromium: str | None
    notice: str | None  # one line for the user when auto fell back to HTTP


def choose_engine(requested: str | None, chromium: str | None = None) -> EngineChoice:
    """Resolve auto|browser|http (flag, then EVARCHIVE_ENGINE, then auto)."""
    engine = (requested or os.environ.get("EVARCHIVE_ENGINE") or "auto").lower()
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}: use auto, browser or http")
    if engine == "http":
        return EngineChoice("http", None, None)
    found = find_chromium(chromium)
    if found is None:
        if engine == "browser" or chromium:
            where = f" at {chromium}" if chromium else ""
            raise CouldNotRunError(f"the browser engine needs Chromium, not found{where}: {INSTALL_HINT}")
        return EngineChoice("http", None, NO_BROWSER_LINE)
    return EngineChoice("browser", found, None)


