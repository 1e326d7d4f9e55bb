"""Tests for the ``ratiokit`` command line (ratiokit/cli.py)."""

import importlib.metadata
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import integrate

import ratiokit as rk
from ratiokit import cli
from ratiokit.two_sample import two_sample_test

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _agg_backend(monkeypatch):
    # Figures never go through pyplot, but keep any accidental use headless.
    monkeypatch.setenv("MPLBACKEND", "Agg")


def _table(out):
    """The demo's MMD table as {pair name: {column: cell}}."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("pair "))
    # Cells are separated by at least two spaces and hold single spaces ("P vs Q").
    header = re.split(r"\s{2,}", lines[start].strip())
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


# --- doctor ---------------------------------------------------------------------------------


def test_doctor_passes_and_reports_torch(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"[ok]   torch {torch.__version__}: float64 matmul" in out
    assert "[ok]   kernel sums (dense):" in out
    assert f"  ratiokit      {rk.__version__}" in out
    # Every check line carries a verdict; GPU lines skip on a machine without CUDA.
    verdicts = [line for line in out.splitlines() if line.startswith("[")]
    assert len(verdicts) == len(cli._doctor_checks())
    assert all(line[:7] in ("[ok]   ", "[skip] ", "[FAIL] ") for line in verdicts)
    if not torch.cuda.is_available():
        assert "[skip] GPU (torch): no CUDA device" in out
    assert "All required checks passed" in out


@pytest.mark.keops
def test_doctor_keops_line_compares_with_dense():
    status, line = cli._run_check(cli._Check("KeOps (CPU)", lambda: cli._check_keops("cpu")))
    assert status == "ok", line
    assert "matched the dense kernel sum (max rel. error" in line


@pytest.mark.gpu
def test_doctor_gpu_lines_pass_on_a_gpu():
    status, line = cli._run_check(cli._Check("GPU (torch)", cli._check_cuda))
    assert status == "ok", line
    assert "float64 matmul matched the CPU" in line


@pytest.mark.gpu
@pytest.mark.keops
def test_doctor_keops_gpu_line_passes_on_a_gpu():
    status, line = cli._run_check(cli._Check("KeOps (GPU)", lambda: cli._check_keops("cuda")))
    assert status == "ok", line


def _fast_checks(monkeypatch):
    """Replace the slow optional checks (KeOps compilation, a dask cluster) by stubs."""
    monkeypatch.setattr(cli, "_check_keops", lambda device: "stub")
    monkeypatch.setattr(cli, "_check_dask", lambda: "stub")


def test_doctor_optional_failure_is_isolated(monkeypatch, capsys):
    _fast_checks(monkeypatch)

    def broken():
        raise RuntimeError("cannot start a cluster\nsecond line of details")

    monkeypatch.setattr(cli, "_check_dask", broken)
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("[FAIL]")]
    assert len(failed) == 1
    assert "(optional): RuntimeError: cannot start a cluster" in failed[0]
    assert "second line" not in out
    assert "[ok]   matplotlib" in out  # the checks after it still ran


def test_doctor_required_failure_exits_1(monkeypatch, capsys):
    _fast_checks(monkeypatch)

    def broken():
        raise OSError("no BLAS")

    monkeypatch.setattr(cli, "_check_torch", broken)
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert f"[FAIL] torch {torch.__version__}: OSError: no BLAS" in out
    assert "1 required check(s) failed" in out


def test_doctor_silences_library_output(monkeypatch, capsys):
    _fast_checks(monkeypatch)

    def noisy():
        print("[KeOps] Compiling ...")
        print("to stderr", file=sys.stderr)
        return "quiet"

    monkeypatch.setattr(cli, "_check_dask", noisy)
    assert cli.main(["doctor"]) == 0
    captured = capsys.readouterr()
    assert "Compiling" not in captured.out
    assert "to stderr" not in captured.err
    assert ": quiet" in captured.out


def test_module_entry_point_runs_doctor():
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-m", "ratiokit.cli", "doctor"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[ok]   torch" in proc.stdout


def test_console_script_is_declared():
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="ratiokit")
    assert entry.value == "ratiokit.cli:main"
    assert entry.load() is cli.main


# --- demo -----------------------------------------------------------------------------------


def test_demo_writes_png_and_separates_pairs(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--n", "300"]) == 0
    out = capsys.readouterr().out
    png = tmp_path / "mmd_demo.png"
    assert png.stat().st_size > 1000
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert f"figure written to {png}" in out
    rows = _table(out)
    assert set(rows) == {"shifted", "same"}
    assert rows["shifted"]["n"] == "300"
    shifted, same = float(rows["shifted"]["MMD^2"]), float(rows["same"]["MMD^2"])
    assert shifted > same
    # n = 300, |mu| = 0.5: the shift is ~15 null sd; a same-distribution pair within ~3.
    assert float(rows["shifted"]["MMD^2/sd"]) > 5
    assert abs(float(rows["same"]["MMD^2/sd"])) < 4
    assert float(rows["same"]["exact"]) == 0.0
    # 200 relabellings: the shifted pair beats all of them, p = 1 / 201.
    assert float(rows["shifted"]["p-value"]) == pytest.approx(1 / 201, rel=1e-3)


def test_demo_is_seeded_and_no_plot_writes_nothing(tmp_path, capsys):
    args = ["demo", "--out", str(tmp_path), "--n", "100", "--seed", "3", "--no-plot"]
    assert cli.main(args) == 0
    first = _table(capsys.readouterr().out)
    assert cli.main(args) == 0
    second = _table(capsys.readouterr().out)
    assert first == second
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["demo", "--n", "abc"],
        ["demo", "--n", "1"],
        ["demo", "--seed", "-1"],
        ["demo", "--bogus"],
        ["doctor", "extra"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert "Traceback" not in err


def test_user_error_is_one_line_exit_1(monkeypatch, tmp_path, capsys):
    def bad(n, rng):
        raise ValueError("`x_p` must hold finite values; got NaN or inf in 1 of 10 rows.")

    monkeypatch.setattr(cli, "_demo_mmd", bad)
    assert cli.main(["demo", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert (
        err == "ratiokit: error: `x_p` must hold finite values; got NaN or inf in 1 of 10 rows.\n"
    )


# --- the demo's computations ------------------------------------------------------------------


def test_demo_pair_is_the_permutation_test():
    gen = np.random.default_rng(0)
    x_p, x_q = gen.normal(0.3, 1.0, size=(40, 2)), gen.normal(size=(30, 2))
    pair = cli._mmd_pair("p", ("P", "Q"), x_p, x_q, 0.3, np.random.default_rng(1))
    # The demo draws its seed first, then runs two_sample_test with it.
    seed = int(np.random.default_rng(1).integers(2**31))
    res = two_sample_test(x_p, x_q, n_permutations=cli.DEMO_PERMUTATIONS, rng=seed)
    assert pair.mmd2 == res.statistic and pair.pvalue == res.pvalue
    assert pair.null_sd == pytest.approx(np.std(res.null_distribution, ddof=1))
    # Its statistic is the unbiased MMD^2 at the bandwidth it reports.
    mmd = rk.MMD(bandwidth=pair.bandwidth)
    assert pair.mmd2 == pytest.approx(rk.discrepancy(x_p, x_q, method=mmd), rel=1e-10)


@pytest.mark.parametrize(
    ("shift", "dim", "bandwidth"), [(0.5, 1, 1.0), (1.0, 2, 1.7), (0.0, 3, 0.8)]
)
def test_gaussian_shift_mmd2_against_quadrature(shift, dim, bandwidth):
    # Reference: E k(x, y) factorises over coordinates (k and both covariances are
    # products), and each 1-D factor is integrated numerically with scipy's dblquad.
    def expected_kernel(delta):
        def integrand(y, x):
            dens = math.exp(-0.5 * (x - delta) ** 2 - 0.5 * y**2) / (2 * math.pi)
            return math.exp(-((x - y) ** 2) / (2 * bandwidth**2)) * dens

        return integrate.dblquad(integrand, -12, 12 + delta, -12, 12, epsabs=1e-12)[0]

    per_coordinate = shift / math.sqrt(dim)
    same = expected_kernel(0.0) ** dim
    cross = expected_kernel(per_coordinate) ** dim
    reference = 2 * same - 2 * cross
    assert cli._gaussian_shift_mmd2(shift, dim, bandwidth) == pytest.approx(
        reference, rel=1e-7, abs=1e-12
    )


# --- test -----------------------------------------------------------------------------------


def _samples(tmp_path, shift=0.0):
    """x as a CSV file with a header line, y as a .npy array (3 features each)."""
    gen = np.random.default_rng(5)
    x, y = gen.normal(shift, 1.0, size=(40, 3)), gen.normal(size=(30, 3))
    a, b = tmp_path / "a.csv", tmp_path / "b.npy"
    np.savetxt(a, x, delimiter=",", header="u,v,w", comments="")
    np.save(b, y)
    return x, y, str(a), str(b)


def _field(out, name):
    line = next(line for line in out.splitlines() if line.startswith(name))
    return float(line.split()[1])


def test_test_command_prints_the_statistic_and_p_value(tmp_path, capsys):
    x, y, a, b = _samples(tmp_path, shift=0.8)
    assert cli.main(["test", a, b, "--permutations", "99", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    # The CSV round trip keeps every digit (savetxt writes 18 significant digits).
    res = two_sample_test(x, y, n_permutations=99, rng=3)
    assert _field(out, "statistic") == pytest.approx(res.statistic, rel=1e-5)
    assert _field(out, "p-value") == pytest.approx(res.pvalue, rel=1e-5)
    assert f"x: {a} (40 x 3)" in out and f"y: {b} (30 x 3)" in out
    assert "99 random relabellings, greater" in out


def test_test_command_defaults_to_the_library_number_of_permutations(tmp_path, capsys):
    # One default for every permutation test: the command's help names it, and a run
    # without --permutations uses it (40 + 30 rows: far more than 999 relabellings exist).
    from ratiokit.config import N_PERMUTATIONS

    _, _, a, b = _samples(tmp_path)
    with pytest.raises(SystemExit):
        cli.main(["test", "--help"])
    assert f"N_PERMUTATIONS, {N_PERMUTATIONS})" in " ".join(capsys.readouterr().out.split())
    assert cli.main(["test", a, b, "--method", "energy", "--seed", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_permutations"] == N_PERMUTATIONS


def test_test_command_progress_bar_only_when_asked_outside_a_terminal(tmp_path, capsys):
    # Captured stderr is not a terminal (like a log file): no bar unless --progress forces it.
    _, _, a, b = _samples(tmp_path)
    assert cli.main(["test", a, b, "--permutations", "9", "--seed", "0"]) == 0
    assert "permutation null" not in capsys.readouterr().err
    assert cli.main(["test", a, b, "--permutations", "9", "--seed", "0", "--progress"]) == 0
    assert "permutation null" in capsys.readouterr().err


def test_test_command_json_is_seeded(tmp_path, capsys):
    x, y, a, b = _samples(tmp_path)
    argv = ["test", a, b, "--method", "energy", "--permutations", "49", "--seed", "1", "--json"]
    assert cli.main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out) == first
    res = two_sample_test(x, y, method="energy", n_permutations=49, rng=1)
    assert first["method"] == "energy" and first["n_permutations"] == 49
    assert (first["n_x"], first["n_y"], first["n_features"]) == (40, 30, 3)
    assert first["pvalue"] == res.pvalue
    assert first["statistic"] == pytest.approx(res.statistic, rel=1e-12)


def _write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d, b: (str(d / "missing.csv"), b),
            "cannot read `{x}`: No such file or directory.",
        ),
        (lambda d, b: (_write(d / "x.xlsx", "1,2,3\n"), b), "`{x}` must be a .npy, .csv, .tsv"),
        (
            lambda d, b: (_write(d / "x.csv", "1,2\n3,4\n5,6\n"), b),
            "`{x}` and `{y}` must have the same number of features; got 2 and 3.",
        ),
        (
            lambda d, b: (_write(d / "x.csv", "1,2,3\nnan,1,1\n2,2,2\n"), b),
            "`{x}` must hold finite values; got NaN or inf in 1 of 3 rows.",
        ),
        (
            lambda d, b: (_write(d / "x.csv", "a,b,c\n1,2,x\n"), b),
            "cannot read `{x}` as a table of numbers:",
        ),
        (
            lambda d, b: (_write(d / "x.npy", "not an array"), b),
            "cannot read `{x}` as a NumPy array:",
        ),
        (lambda d, b: (_write(d / "x.csv", "1,2,3\n"), b), "`{x}` must have at least 2 samples"),
    ],
    ids=["missing", "suffix", "columns", "nan", "text", "npy", "one-row"],
)
def test_test_command_bad_files_exit_1_with_one_line(tmp_path, capsys, make, message):
    *_, b = _samples(tmp_path)
    x, y = make(tmp_path, b)
    assert cli.main(["test", x, y, "--permutations", "9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ratiokit: error: ") and err.count("\n") == 1
    assert message.format(x=x, y=y) in err


def test_test_command_unknown_method_exits_1(tmp_path, capsys):
    _, _, a, b = _samples(tmp_path)
    assert cli.main(["test", a, b, "--method", "mdm"]) == 1
    assert "`method` must be one of [" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra", [[], ["--permutations", "0"], ["--alternative", "up"], ["--seed", "x"]]
)
def test_test_command_bad_arguments_exit_2(tmp_path, capsys, extra):
    _, _, a, _ = _samples(tmp_path)
    with pytest.raises(SystemExit) as info:
        cli.main(["test", a, *extra])
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_test_command_exit_status_in_a_process(tmp_path):
    _, _, a, _ = _samples(tmp_path)
    bad = _write(tmp_path / "bad.csv", "1,2,3\nnan,nan,nan\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ratiokit.cli", "test", a, bad],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert f"`{bad}` must hold finite values" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- issue 13: errors exit non-zero with one line; --json is strict -------------------------


def _strict_json(text):
    """json.loads that refuses NaN and Infinity (Python's json accepts them by default)."""

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_test_command_at_an_extreme_scale(tmp_path, capsys):
    # Before: data at 1e-155 gave `statistic nan`, `p-value 0.001`, exit 0, and NaN in --json.
    x, y, _, _ = _samples(tmp_path)
    a, b = tmp_path / "tiny_x.npy", tmp_path / "tiny_y.npy"
    np.save(a, x * 1e-155)
    np.save(b, y * 1e-155)
    for extra in ([], ["--json"]):
        assert cli.main(["test", str(a), str(b), "--permutations", "9", *extra]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1
        assert err.startswith(
            "ratiokit: error: `bandwidth`='median' must resolve to a value between"
        )
    # The energy distance has no bandwidth: it is computed on rescaled data, in the data's
    # units, with the p-value of unit-scale data.
    argv = ["test", str(a), str(b), "--method", "energy", "--permutations", "49", "--seed", "1"]
    assert cli.main([*argv, "--json"]) == 0
    record = _strict_json(capsys.readouterr().out)
    res = two_sample_test(x, y, method="energy", n_permutations=49, rng=1)
    assert record["pvalue"] == res.pvalue
    assert record["statistic"] == pytest.approx(res.statistic * 1e-155, rel=1e-10)


def test_test_command_refuses_too_many_permutations_in_one_line(tmp_path, capsys):
    # Before: a MemoryError traceback (18.6 GiB of labels).
    _, _, a, b = _samples(tmp_path)
    assert cli.main(["test", a, b, "--permutations", str(10**10)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "`n_permutations` must be at most" in err


def test_test_command_non_finite_values_and_memory_errors_exit_1(tmp_path, capsys, monkeypatch):
    _, _, a, b = _samples(tmp_path)
    res = two_sample_test(*[np.eye(3)] * 2, n_permutations=9, rng=0)
    bad = rk.TwoSampleTestResult(
        statistic=res.statistic,
        pvalue=res.pvalue,
        null_distribution=res.null_distribution,
        method=res.method,
        alternative=res.alternative,
        n_permutations=res.n_permutations,
        details={"f_pvalue": math.nan},
    )
    monkeypatch.setattr(rk.two_sample, "two_sample_test", lambda *args, **kwargs: bad)
    assert cli.main(["test", a, b, "--json"]) == 1  # never a bare NaN token
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "JSON" in err

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(rk.two_sample, "two_sample_test", out_of_memory)
    assert cli.main(["test", a, b]) == 1
    err = capsys.readouterr().err
    assert err == "ratiokit: error: out of memory; use smaller samples or fewer permutations\n"


# --- issue 19: --standardize, fast answers without torch, where a bad cell is ---------------


@pytest.mark.parametrize(
    ("argv", "out", "err"),
    [
        (["--version"], f"ratiokit {rk.__version__}\n", ""),
        (["-V"], f"ratiokit {rk.__version__}\n", ""),
        (["test", "missing.csv", "y.csv"], "", "ratiokit: error: cannot read `missing.csv`: No"),
        (["test", "x.xlsx", "y.csv"], "", "ratiokit: error: `x.xlsx` must be a .npy, .csv"),
    ],
)
def test_version_and_file_errors_answer_without_importing_torch(tmp_path, argv, out, err):
    # Before, `ratiokit.cli` imported torch (about 4 s cold) before parsing any argument.
    code = (
        "import sys\n"
        "from ratiokit.cli import main\n"
        "try:\n"
        f"    status = main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    status = exit.code\n"
        "print('torch' in sys.modules, status, file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(rk.__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    *lines, last = proc.stderr.splitlines()
    assert last == f"False {0 if out else 1}", proc.stderr
    assert proc.stdout == out and "\n".join(lines).startswith(err)


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        (
            "h.csv",
            "alcohol,malic,ash\n1,2,3\n4,5,6\n7,n/a,9\n",
            "'n/a' in column 'malic' (column 2) of data row 3 (line 4) is not a number.",
        ),
        ("q.csv", '"a","b","c"\n1,2,3\n4,5,x\n', "'x' in column 'c' (column 3) of data row 2"),
        ("n.csv", "1,2,3\n4,5,6\n7,8,?\n", "'?' in column 3 of data row 3 (line 3) is not"),
        ("w.txt", "# comment\n1 2 3\n\n4 five 6\n", "'five' in column 2 of data row 2 (line 4)"),
    ],
)
def test_a_non_numeric_cell_is_named_by_column_and_row(tmp_path, capsys, name, text, where):
    # Before: "could not convert string 'alcohol' to float64 at row 0, column 1." (the header)
    *_, b = _samples(tmp_path)
    x = _write(tmp_path / name, text)
    assert cli.main(["test", x, b]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ratiokit: error: cannot read `{x}` as a table of numbers: {where}")
    assert err.count("\n") == 1


def test_test_command_standardize_equals_the_function(tmp_path, capsys):
    x, y, a, b = _samples(tmp_path)
    argv = ["test", a, b, "--permutations", "49", "--seed", "2", "--json", "--standardize"]
    assert cli.main(argv) == 0
    record = _strict_json(capsys.readouterr().out)
    res = two_sample_test(x, y, n_permutations=49, rng=2, standardize=True)
    assert record["details"]["standardized"] is True
    assert record["pvalue"] == res.pvalue
    assert record["statistic"] == pytest.approx(res.statistic, rel=1e-12)
