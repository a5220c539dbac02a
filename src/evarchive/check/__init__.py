"""Live re-checks of cited sources: is what was cited still there?

A nightly cron job re-checks every source; each check ends in a verdict, a failing streak that
is confirmed only after N strikes, and evidence of what the server answered. The parts, each
readable on its own:

- ``verdicts.py`` (with ``markers.py``): the judgement of one answer, pure functions.
- ``strikes.py``: when failing checks make a source dead; the offline rule. Pure functions.
- ``results.py``: a judged check as printed and stored; ``settings.py``: a run's knobs.
- ``fetch.py``: asking the live web (limits, failures as observations); ``run.py``: the
  requests each source needs, the run over one process or several, the lock, the public
  ``check_sources``/``select_sources``.
- ``baselines.py``: the captures a check compares with, read back; ``store.py``: WARC evidence,
  catalogue rows and custody entries, committed in batches.
- ``diff.py`` and ``rot.py``: what changed in a page; which claims lost their sources.

Import the part you need (``from evarchive.check.run import check_sources``); the package
itself loads nothing, so the capture engine can use ``verdicts`` without the rest.
"""
