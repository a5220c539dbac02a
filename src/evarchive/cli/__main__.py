"""``python -m evarchive.cli``."""

from . import entry

entry()
