"""The README's quickstart runs as written."""

from __future__ import annotations

import doctest
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quickstart_runs():
    result = doctest.testfile(str(README), module_relative=False, verbose=False)
    assert result.attempted >= 5
    assert result.failed == 0
