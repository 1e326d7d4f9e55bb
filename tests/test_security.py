"""Static check: the package never unpickles arbitrary objects nor evaluates strings."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ratiokit"


def violations(source: str, filename: str = "<string>") -> list[str]:
    """Unsafe loads and evaluations in ``source``, one line each."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(
            func.value, ast.Name) else ""  # fmt: skip
        keywords = {k.arg: k.value for k in node.keywords}
        where = f"{filename}:{node.lineno}"
        if name in ("eval", "exec") and not owner:
            found.append(f"{where}: {name}()")
        if owner in ("pickle", "dill", "cloudpickle", "joblib") and name in ("load", "loads"):
            found.append(f"{where}: {owner}.{name}()")
        if name == "Unpickler":
            found.append(f"{where}: Unpickler")
        if owner == "torch" and name == "load":
            flag = keywords.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                found.append(f"{where}: torch.load without weights_only=True")
        flag = keywords.get("allow_pickle")
        if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
            found.append(f"{where}: allow_pickle={ast.unparse(flag)}")
    return found


def test_package_has_no_unsafe_loads():
    files = sorted(PACKAGE.rglob("*.py"))
    assert files
    found = [v for f in files for v in violations(f.read_text(), str(f.relative_to(PACKAGE)))]
    assert found == []


def test_the_check_catches_each_pattern():
    bad = """
import pickle, torch, numpy as np
pickle.loads(b"")
torch.load("f")
torch.load("f", weights_only=False)
np.load("f", allow_pickle=True)
eval("1")
exec("x = 1")
"""
    assert len(violations(bad)) == 6
    good = 'torch.load("f", weights_only=True)\nnp.load("f")\nmodel.eval()\n'
    assert violations(good) == []
