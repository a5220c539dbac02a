"""The browser capture engine: load each URL in headless Chromium, record every request it makes
through evarchive's own recording path (``mitm``), and keep what the reader saw.

Per capture: a fresh browser context (its own cookies, cache and storage: Chromium's
off-the-record profile) whose proxy is a loopback listener of its own, so every exchange belongs
to exactly one capture. The page is loaded, left to go quiet, scrolled to the end, then
screenshotted, printed and serialised; those artefacts are WARC ``resource`` records beside the
recorded exchanges. Everything the browser reports loading is compared with what the proxy
recorded, and any difference is a finding.

The parts, each read on its own:

- ``engine``: which engine captures, finding Chromium, its switches and the engine's settings;
- ``run``: the capture run (one browser, a context and a proxy listener per page, the tab limit,
  the memory bound, commits);
- ``page``: driving one page and taking its artefacts;
- ``accounting``: what the browser loaded beside what was recorded;
- ``evidence``: the page's WARC records, artefacts and provenance summary;
- ``processes``: Chromium's processes never outlive a run.
"""

from .engine import (
    CHROMIUM_ARGS,
    ENGINES,
    INSTALL_HINT,
    NO_BROWSER_LINE,
    BrowserSettings,
    EngineChoice,
    choose_engine,
    find_chromium,
)
from .page import png_size
from .processes import reap_orphans
from .run import BrowserCaptureRun, BrowserOutcome, capture_with_browser, recapture_by_engine

__all__ = ["CHROMIUM_ARGS", "ENGINES", "INSTALL_HINT", "NO_BROWSER_LINE", "BrowserCaptureRun",
           "BrowserOutcome", "BrowserSettings", "EngineChoice", "capture_with_browser",
           "choose_engine", "find_chromium", "png_size", "reap_orphans", "recapture_by_engine"]
