"""The library API re-exported from ``evarchive``: every name resolves to its module's object,
the README's Python example runs as written, and importing the package stays cheap."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import evarchive

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("name", [n for n in evarchive.__all__ if n != "__version__"])
def test_every_public_name_is_its_modules_own_object(name: str) -> None:
    module = importlib.import_module(f"evarchive.{evarchive._PUBLIC[name]}")
    assert getattr(evarchive, name) is getattr(module, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        evarchive.nothing_here  # noqa: B018


def test_importing_the_package_loads_no_engine() -> None:
    code = "import sys, evarchive; print(sorted(m for m in sys.modules if m.startswith(('evarchive.', 'httpx'))))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_readme_python_example_runs_as_written(tmp_path: Path, local_server: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    example = re.search(r"## Using evarchive from Python.*?```python\n(.*?)```", README.read_text(), re.S)
    assert example, "README has no Python example"
    code = example.group(1).replace("https://example.org/a", local_server.url("/plain"))
    (tmp_path / "report.md").write_text(f"A claim.\n\n{local_server.url('/plain')}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the documented example itself
    assert (tmp_path / "bundle" / "verify_bundle.py").is_file()
    assert namespace["verdict"].intact
