"""Generic rendering of results: markdown tables, CSV files, numbers, p-values, intervals and figures.

Every report of the toolkit (evaluation summaries, the bias study, the demo) formats through these helpers, so a
number, an interval or a missing value reads the same everywhere: `n/a` for a missing value, one decimal for rates
and changes, `p < 0.001` below the smallest p-value worth printing."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Iterable

from distilwhisper.io import atomic_write_text

ALPHA = 0.05


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def num(x, digits: int = 1) -> str:
    return "n/a" if _missing(x) else f"{x:.{digits}f}"


def signed(x, digits: int = 1) -> str:
    return "n/a" if _missing(x) else f"{x:+.{digits}f}"


def interval(value, low, high, with_sign: bool = False) -> str:
    """'12.3 [10.1, 14.0]' (or signed: '+1.2 [-0.4, +2.9]')."""
    f = signed if with_sign else num
    return f"{f(value)} [{f(low)}, {f(high)}]"


def row_interval(row: dict, key: str, with_sign: bool = False) -> str:
    """The interval of a table row that stores `key`, `key_low` and `key_high`."""
    return interval(row[key], row[f"{key}_low"], row[f"{key}_high"], with_sign)


def p_value(p) -> str:
    """A p-value for a table cell."""
    if _missing(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_phrase(p) -> str:
    """'p = 0.123' or 'p < 0.001' for sentences."""
    text = p_value(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def verdict(p) -> str:
    if _missing(p):
        return "not testable"
    return "significant at 5 %" if p < ALPHA else "not significant at 5 %"


def markdown_table(columns: list[str], rows: Iterable) -> list[str]:
    """Lines of a markdown table: header, separator, one line per row of cell strings."""
    return ([f"| {' | '.join(columns)} |", "|" + "---|" * len(columns)]
            + [f"| {' | '.join(str(cell) for cell in row)} |" for row in rows])


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows as CSV (columns in order of first appearance), written atomically."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display here or on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, ax, path: Path, title: str, xlabel: str, ylabel: str) -> bool:
    """Label, legend, write as PNG and free the figure (the common tail of every figure)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return True
