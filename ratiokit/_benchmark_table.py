"""Tables of a :class:`~ratiokit.results.BenchmarkResult`: summary over seeds, markdown, CSV.

Standard errors are ``std(ddof=1) / sqrt(k)`` over the k seeds where a metric has a value;
for 0/1 rejection indicators (power, type-I error) that is the binomial standard error of the
rejection rate, up to the factor ``sqrt(k / (k - 1))``.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["format_markdown", "summarize", "write_csv"]

#: Columns of a summary row before the metrics.
GROUP_COLUMNS = ("method", "problem", "n")


def summarize(result: Any) -> list[dict[str, Any]]:
    """One dict per (method, problem, n), in the order of the rows.

    Keys: ``method``, ``problem``, ``n``, ``seeds`` (rows in the group), then for each metric
    its mean over the seeds where it has a value (NaN if none) and ``<metric>_se``, and
    ``note``: the distinct notes of the group's rows, joined by "; ".
    """
    index = {name: k for k, name in enumerate(result.columns)}
    groups: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for row in result.rows:
        groups.setdefault(tuple(row[index[c]] for c in GROUP_COLUMNS), []).append(row)
    out = []
    for key, rows in groups.items():
        entry: dict[str, Any] = dict(zip(GROUP_COLUMNS, key, strict=True))
        entry["seeds"] = len(rows)
        for metric in result.metrics:
            values = np.array([row[index[metric]] for row in rows], dtype=np.float64)
            values = values[~np.isnan(values)]
            k = values.size
            entry[metric] = float(values.mean()) if k else math.nan
            entry[f"{metric}_se"] = float(values.std(ddof=1) / math.sqrt(k)) if k > 1 else math.nan
        notes = [row[index["note"]] for row in rows if row[index["note"]]]
        entry["note"] = "; ".join(dict.fromkeys(notes))
        out.append(entry)
    return out


def _number(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.3g}"


def _cell(mean: float, se: float) -> str:
    if math.isnan(mean) or math.isnan(se):
        return _number(mean)
    return f"{mean:.3g} ± {se:.2g}"


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]


def format_markdown(result: Any, *, summary: bool = True) -> str:
    """A markdown table: means ± standard errors over seeds, or every row.

    Summaries list the notes (metrics that do not apply, failures) under the table, one line
    per (method, problem).
    """
    metrics = list(result.metrics)
    if not summary:
        header = [*result.columns]
        body = [
            [
                _number(v) if name in metrics else str(v)
                for name, v in zip(result.columns, row, strict=True)
            ]
            for row in result.rows
        ]
        return "\n".join(_table(header, body)) + "\n"
    rows = summarize(result)
    header = [*GROUP_COLUMNS, "seeds", *metrics]
    body = [
        [str(r["method"]), str(r["problem"]), str(r["n"]), str(r["seeds"])]
        + [_cell(r[m], r[f"{m}_se"]) for m in metrics]
        for r in rows
    ]
    lines = _table(header, body)
    lines += [
        "",
        "Mean ± standard error over seeds (n/a: no value; see the notes).",
        f"power and type_i_error are rejection rates at alpha = {result.alpha:g}; "
        "time is in seconds.",
    ]
    notes = {}
    for r in rows:
        for note in r["note"].split("; ") if r["note"] else []:
            notes.setdefault((r["method"], r["problem"], note), None)
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {method} on {problem}: {note}" for method, problem, note in notes]
    return "\n".join(lines) + "\n"


def write_csv(result: Any, path: str | Path | None = None) -> str | Path:
    """Every row as CSV (floats written exactly, NaN as ``nan``); text, or the path written."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow([repr(float(v)) if isinstance(v, float) else v for v in row])
    text = buffer.getvalue()
    if path is None:
        return text
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out
