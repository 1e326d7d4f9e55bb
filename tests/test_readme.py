"""The README's quickstarts and the documentation pages' examples run as written, the
README's benchmark figures are the ones in the committed result tables, and the API reference
lists the public surface."""

from __future__ import annotations

import doctest
import importlib
import inspect
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Markdown pages of the documentation site that hold doctest examples (``>>>``).
DOC_PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if ">>>" in p.read_text())


def run_doctests(path: Path) -> doctest.TestResults:
    return doctest.testfile(str(path), module_relative=False, verbose=False, report=True)


def test_readme_quickstarts_run():
    result = run_doctests(README)
    assert result.failed == 0
    text = README.read_text()
    # One quickstart per front door, each executed (a doctest line calls it).
    for call in ("rk.estimate_ratio(", "rk.divergence(", "rk.two_sample_test(", "rk.fit("):
        assert re.search(r"^>>> .*" + re.escape(call), text, flags=re.M), call
    assert result.attempted >= 15


@pytest.mark.parametrize("page", DOC_PAGES, ids=[str(p.relative_to(ROOT)) for p in DOC_PAGES])
def test_documentation_page_examples_run(page):
    result = run_doctests(page)
    assert result.attempted > 0 and result.failed == 0


def test_documentation_has_pages_with_examples():
    # The guides to the three front doors carry runnable examples.
    names = {p.name for p in DOC_PAGES}
    assert {"estimate.md", "two_sample.md", "fit.md", "getting_started.md"} <= names


def _numbers(text: str) -> list[tuple[float, int, str]]:
    """Each number in ``text`` with its count of decimals and the unit after it, if any."""
    out = []
    for match in re.finditer(r"(\d[\d,]*(?:\.\d+)?)\s*(GiB|MiB|s\b)?", text):
        digits = match.group(1).replace(",", "")
        decimals = len(digits.split(".")[1]) if "." in digits else 0
        out.append((float(digits), decimals, match.group(2) or ""))
    return out


def test_readme_benchmark_figures_come_from_the_linked_tables():
    section = README.read_text().split("## Benchmarks", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and ".md)" in line]
    assert rows, "the README's benchmark table is missing"
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        target = ROOT / re.search(r"\]\((benchmarks/[^)]+)\)", row).group(1)
        assert target.is_file(), f"{target} is not committed"
        table = [value for value, _, _ in _numbers(target.read_text())]
        # Every figure in the ratiokit and baseline columns is a value of the table rounded
        # to the digits shown (GiB figures may be MiB values of the table / 1024).
        for value, decimals, unit in _numbers(cells[1] + " " + cells[2]):
            candidates = table + ([v / 1024 for v in table] if unit == "GiB" else [])
            half_unit = 0.5 * 10.0**-decimals + 1e-9
            assert any(math.isclose(value, c, abs_tol=half_unit) for c in candidates), (
                f"{value} {unit} in the README row {cells[0]!r} is not in {target.name}"
            )


#: Modules whose ``__all__`` is the public surface the API reference must cover.
PUBLIC_MODULES = (
    "ratiokit",
    "ratiokit.methods",
    "ratiokit.kernels",
    "ratiokit.synthetic",
    "ratiokit.simulators",
    "ratiokit.tasks",
)


def _documented() -> tuple[list[object], set[str]]:
    """Objects listed in docs/api.rst's autosummary tables, and the modules it documents."""
    objects, modules, current = [], set(), None
    for line in (ROOT / "docs" / "api.rst").read_text().splitlines():
        if match := re.match(r"\.\. (currentmodule|automodule):: (\S+)", line):
            current = match.group(2)
            modules.add(current)
        elif re.match(r"   [A-Za-z_]\w*$", line) and current is not None:
            objects.append(getattr(importlib.import_module(current), line.strip()))
    return objects, modules


def test_api_reference_lists_the_public_surface():
    objects, modules = _documented()
    missing = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                if obj.__name__ not in modules:
                    missing.append(f"{module_name}.{name}")
            elif callable(obj) and all(obj is not other for other in objects):
                missing.append(f"{module_name}.{name}")  # constants (dicts, tuples) aside
    assert not missing, f"public names missing from docs/api.rst: {missing}"
