"""docs/reliability.md, the page of guarantees, cannot drift from the tests that prove them.

Each row of the page's tables names, in its last column, one or more tests as
``tests/test_file.py::test_name`` (or ``::Class::test_name``). This module checks that every
row names at least one, that each named test is defined in its file (read with ``ast``, so a
renamed or deleted test fails here), and that none of them is skipped unconditionally.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reliability.md"
TEST_ID = re.compile(r"`(tests/test_\w+\.py)((?:::\w+)+)`")


def _rows() -> list[str]:
    """The body rows of the page's Markdown tables (header and rule rows left out)."""
    rows, previous = [], ""
    for line in PAGE.read_text().splitlines():
        if line.startswith("| ") and not re.match(r"\|\s*-", line):
            if previous.startswith("| "):  # a header row is followed by its rule row
                rows.append(line)
        previous = line if line.startswith("|") else ""
    return rows


def _definitions(path: Path) -> dict[str, ast.AST]:
    """Test functions of a file by id: ``name`` or ``Class::name``."""
    tree = ast.parse(path.read_text())
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    found[f"{node.name}::{item.name}"] = item
    return found


def _skipped(node: ast.AST) -> bool:
    """Whether a test carries ``@pytest.mark.skip`` (an unconditional skip proves nothing)."""
    return any(
        ast.unparse(d).startswith("pytest.mark.skip(") or ast.unparse(d) == ("pytest.mark.skip")
        for d in getattr(node, "decorator_list", [])
    )


def test_page_has_rows_and_is_in_the_documentation_tree():
    assert len(_rows()) >= 20
    index = (ROOT / "docs" / "index.md").read_text()
    assert re.search(r"^reliability$", index, flags=re.M), "reliability is not in a toctree"


@pytest.mark.parametrize("row", _rows(), ids=lambda row: row.split("|")[1].strip()[:60])
def test_every_guarantee_names_tests_that_exist(row):
    ids = TEST_ID.findall(row.rsplit("|", 2)[-2])
    assert ids, f"the row names no test as `tests/test_x.py::test_y`: {row}"
    for file, names in ids:
        path = ROOT / file
        assert path.is_file(), f"{file} does not exist"
        definitions = _definitions(path)
        name = names.lstrip(":")
        assert name in definitions, f"{file}::{name} is not defined"
        assert not _skipped(definitions[name]), f"{file}::{name} is skipped"
