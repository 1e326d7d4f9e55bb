"""Files read and written: the package never unpickles arbitrary objects nor evaluates
strings (a static check), and a saved FitResult never replaces files without
``overwrite=True`` and is refused, with one clear error, when damaged."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ratiokit.fitted import FittedSimulator
from ratiokit.results import FitResult

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


# ---------------------------------------------------------------------------- FitResult files


def a_result(loss=0.5, **kw):
    return FitResult(
        **{
            "theta": np.array([1.0, 2.0]),
            "param_names": ("loc", "scale"),
            "loss": loss,
            "converged": True,
            "method": "mmd",
            "kind": "numpy",
            "n_steps": 3,
            "n_simulations": 30,
            "wall_time": 0.25,
            "history": {"loss": np.array([3.0, 2.0, 1.0])},
            "failures": (((0.0, -1.0), "scale must be positive"),),
            "details": {"search": "nelder-mead"},
            "data": np.arange(6.0).reshape(3, 2),
            **kw,
        }
    )


def generator(net):
    """A trained generator as a fit holds it (noise of 2 dimensions, data of 2 features)."""
    return FittedSimulator(net, "module", 2, latent_dim=2)


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_save_never_replaces_files_without_overwrite(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "fit.json").write_text("my own notes")  # not a saved result
    with pytest.raises(ValueError, match=r"`path` must be a folder without a saved result; .*"
                       r"holds \['fit.json'\]\. Pass `overwrite=True`"):  # fmt: skip
        a_result().save(mine)
    assert files(mine) == {"fit.json": b"my own notes"}

    folder = a_result(loss=0.5).save(tmp_path / "fit")
    before = files(folder)
    with pytest.raises(ValueError, match=r"holds \['fit.json', 'arrays.npz'\]"):
        a_result(loss=0.25).save(folder)
    assert files(folder) == before and FitResult.load(folder).loss == 0.5
    # A save that fails (details that are not JSON) writes nothing, even with overwrite.
    with pytest.raises(TypeError):
        a_result(history={"loss": np.zeros(2)}, details={"f": object()}).save(
            folder, overwrite=True
        )
    assert files(folder) == before
    a_result(loss=0.25).save(folder, overwrite=True)
    assert FitResult.load(folder).loss == 0.25
    assert sorted(files(folder)) == ["arrays.npz", "fit.json"]  # no temporary file left
    with pytest.raises(TypeError, match="`overwrite` must be True or False; got 'yes'"):
        a_result().save(folder, overwrite="yes")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.pop("loss"), r"field 'loss' is missing or malformed"),
        (lambda r: r.update(failures=5), r"field 'failures' is missing or malformed"),
        (lambda r: r.update(converged="no"), r"field 'converged' is missing or malformed"),
        (lambda r: r.update(kind="other"), r"field 'kind' is missing or malformed"),
        (lambda r: r.update(details=[1]), r"field 'details' is missing or malformed"),
        (
            lambda r: r.update(version=7),
            r"format version 1 or 2; got 'ratiokit.FitResult' version 7",
        ),
        (lambda r: r.pop("sha256"), r"arrays.npz .* does not match the SHA-256"),
    ],
)
def test_load_gives_one_clear_error_for_a_damaged_fit_json(tmp_path, edit, message):
    folder = a_result().save(tmp_path / "fit")
    record = json.loads((folder / "fit.json").read_text())
    edit(record)
    (folder / "fit.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=message):
        FitResult.load(folder)


def test_load_refuses_damaged_or_mixed_files(tmp_path):
    folder = a_result().save(tmp_path / "fit")
    other = a_result(theta=np.array([9.0, 9.0])).save(tmp_path / "other")
    good = files(folder)
    for content, message in (
        ("[1, 2]", "must hold a FitResult of format version 1 or 2; got None version None"),
        (good["fit.json"][:30].decode(), "must hold an intact fit.json; got one that is not"),
    ):  # fmt: skip
        (folder / "fit.json").write_text(content)
        with pytest.raises(ValueError, match=message):
            FitResult.load(folder)
    (folder / "fit.json").write_bytes(good["fit.json"])
    (folder / "arrays.npz").write_bytes((other / "arrays.npz").read_bytes())  # another save's
    with pytest.raises(ValueError, match=r"`path` must hold the files of one save; arrays.npz"):
        FitResult.load(folder)


@settings(deadline=None, max_examples=25)
@given(name=st.sampled_from(["arrays.npz", "model.pt"]), flip=st.integers(0, 10**9))
def test_any_flipped_byte_of_a_saved_file_is_refused(name, flip, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fit") / "gan"
    net = nn.Linear(2, 1)
    a_result(kind="module", fitted=generator(net), details={"latent_dim": 2}).save(folder)
    data = bytearray((folder / name).read_bytes())
    data[flip % len(data)] ^= 0xFF
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{name} in .* does not match the SHA-256"):
        FittedSimulator.load(folder, simulator=nn.Linear(2, 1))


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_load_of_a_module_refuses_a_pickle_and_another_architecture(tmp_path):
    net = nn.Linear(2, 1)
    res = a_result(theta=None, kind="module", fitted=generator(net), details={"latent_dim": 2})
    folder = res.save(tmp_path / "gan")
    back = FittedSimulator.load(folder, simulator=nn.Linear(2, 1)).simulator
    assert torch.equal(back.weight, net.weight) and torch.equal(back.bias, net.bias)
    with pytest.raises(ValueError, match=r"`simulator` must be a module of the saved model's"):
        FittedSimulator.load(folder, simulator=nn.Linear(3, 1))

    marker = tmp_path / "pwned"
    torch.save({"weight": _Payload(marker)}, folder / "model.pt")
    with pytest.raises(ValueError, match=r"model.pt in .* does not match the SHA-256"):
        FittedSimulator.load(folder, simulator=nn.Linear(2, 1))
    # With the hash in fit.json rewritten too, only weights_only stands in the way.
    record = json.loads((folder / "fit.json").read_text())
    record["sha256"]["model.pt"] = hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
    (folder / "fit.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="weights_only=True refused it") as caught:
        FittedSimulator.load(folder, simulator=nn.Linear(2, 1))
    assert not marker.exists()
    assert "weights_only=False" not in str(caught.value) and caught.value.__cause__ is None
