"""evarchive: capture, verify and export web evidence cited by reports."""

__version__ = "0.1.0"
