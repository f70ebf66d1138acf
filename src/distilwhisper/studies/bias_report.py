"""Bias-study outputs: CSV tables, PNG figures and `report.md`, whose findings are sentences generated from the
numbers (value, 95 % interval, p-value, and 'significant' only when p < 0.05), never written by hand."""

from __future__ import annotations

from pathlib import Path

from distilwhisper.io import atomic_write_text
from distilwhisper.quantize import PRECISIONS
from distilwhisper.report import (markdown_table, num, p_phrase, p_value, pyplot, row_interval, save_figure,
                                  signed, verdict, write_csv)
from distilwhisper.studies.bias_tables import REFERENCE, BiasResult


def variant_order(variant: tuple[str, str]) -> tuple[str, int]:
    """Models alphabetically, precisions in `quantize.PRECISIONS` order (fp32 first)."""
    return variant[0], PRECISIONS.index(variant[1]) if variant[1] in PRECISIONS else len(PRECISIONS)


def _bars(got: dict, keys: list, key: str, offset: float) -> tuple[list[float], list[float], list[list[float]]]:
    """Positions, values and (lower, upper) error-bar lengths of one series' bars: the `keys` present in `got`,
    each row holding `key`, `key_low` and `key_high`."""
    present = [(i, got[x]) for i, x in enumerate(keys) if x in got]
    return ([i + offset for i, _ in present], [r[key] for _, r in present],
            [[r[key] - r[f"{key}_low"] for _, r in present], [r[f"{key}_high"] - r[key] for _, r in present]])


def figure_rate_vs_hours(result: BiasResult, path: Path) -> bool:
    """Error rate against training hours (log scale), one series per model x precision."""
    if not any(r["training_hours"] for r in result.languages):
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[tuple[str, str], list[dict]] = {}
    for row in result.languages:
        series.setdefault((row["model"], row["precision"]), []).append(row)
    for (model, precision), rows in series.items():
        rows = sorted((r for r in rows if r["training_hours"]), key=lambda r: r["training_hours"])
        if not rows:
            continue
        ax.plot([r["training_hours"] for r in rows], [r[r["metric"]] for r in rows], marker="o",
                label=f"{model} {precision}", alpha=0.8)
        if precision == REFERENCE:
            for r in rows:
                ax.annotate(r["language"], (r["training_hours"], r[r["metric"]]), textcoords="offset points",
                            xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    return save_figure(fig, ax, path, "Error rate vs resource level", "Whisper training hours of the language (log)",
                       "error rate % (WER; CER for languages without spaces)")


def figure_delta_per_tier(result: BiasResult, path: Path) -> bool:
    """Change of error rate against fp32 per resource tier, one bar per model x precision, 95 % intervals."""
    rows = [r for r in result.quantization if r["scope"] == "tier"]
    if not rows:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    tiers = sorted({r["group"] for r in rows}, key=["high", "medium", "low", "very-low"].index)
    variants = sorted({(r["model"], r["precision"]) for r in rows}, key=variant_order)
    width = 0.8 / max(len(variants), 1)
    for k, variant in enumerate(variants):
        got = {r["group"]: r for r in rows if (r["model"], r["precision"]) == variant}
        xs, ys, err = _bars(got, tiers, "delta", k * width)
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=" ".join(variant))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([i + width * (len(variants) - 1) / 2 for i in range(len(tiers))], tiers)
    return save_figure(fig, ax, path, "Quantization effect per resource tier", "resource tier (Whisper training hours)",
                       "error-rate change vs fp32 (points)")


def figure_speaker_gaps(result: BiasResult, path: Path) -> bool:
    """Speaker-group gaps per language and precision with 95 % intervals."""
    rows = result.speakers
    if not rows:
        return False
    plt = pyplot()
    labels = sorted({(r["language"], r["column"], r["group"], r["versus"]) for r in rows})
    variants = sorted({(r["model"], r["precision"]) for r in rows}, key=variant_order)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.5 * max(len(labels), 1) * max(len(variants), 1) ** 0.5))
    height = 0.8 / max(len(variants), 1)
    for k, variant in enumerate(variants):
        got = {(r["language"], r["column"], r["group"], r["versus"]): r for r in rows
               if (r["model"], r["precision"]) == variant}
        ys, xs, err = _bars(got, labels, "gap", k * height)
        ax.barh(ys, xs, height, xerr=err, capsize=3, label=" ".join(variant))
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks([i + height * (len(variants) - 1) / 2 for i in range(len(labels))],
                  [f"{lang} {col}: {a} − {b}" for lang, col, a, b in labels], fontsize=8)
    return save_figure(fig, ax, path, "Speaker-related gaps", "error-rate gap (points)", "")


# ----- markdown -----------------------------------------------------------------------------------------------
def findings(result: BiasResult) -> list[str]:
    """One generated sentence per tested effect."""
    lines = []
    for row in result.correlation:
        what = ("error rate" if row["quantity"] == "error rate"
                else f"the error-rate change of {row['precision']} vs fp32")
        if row["quantity"] != "error rate" or row["precision"] == REFERENCE:
            lines.append(f"- Resource level, {row['model']} {row['precision']}: Spearman correlation of {what} with "
                         f"log training hours ρ = {signed(row['rho'], 2)} ({p_phrase(row['p'])}, "
                         f"{row['languages']} languages): {verdict(row['p'])}.")
    for row in result.quantization:
        if row["scope"] == "language":
            continue
        lines.append(f"- Quantization, {row['model']} {row['precision']}, {row['scope']} {row['group']} "
                     f"({row['languages']}): {row['metric'].upper()} {num(row['base_rate'])} → {num(row['rate'])}, "
                     f"change {row_interval(row, 'delta', True)} points ({signed(row['relative_delta_pct'])} % relative, "
                     f"{p_phrase(row['p'])}): {verdict(row['p'])}.")
    for row in result.speakers:
        base = (f"- Speakers, {row['model']} {row['precision']}, {row['language']} {row['column']}: "
                f"{row['group']} {num(row['rate'])} vs {row['versus']} {num(row['rate_versus'])} "
                f"{row['metric'].upper()}, gap {row_interval(row, 'gap', True)} points (permutation {p_phrase(row['p'])}, "
                f"{row['speakers']} speakers): {verdict(row['p'])}")
        if "gap_change" in row:
            base += (f"; change of the gap vs fp32 {row_interval(row, 'gap_change', True)} points "
                     f"({p_phrase(row['gap_change_p'])}): {verdict(row['gap_change_p'])}")
        lines.append(base + ".")
    for row in result.model_size:
        lines.append(f"- Model size, {row['precision']}, {row['language']}: {row['smaller']} "
                     f"({num(row['smaller_params_m'])} M) {num(row['rate_smaller'])} vs {row['larger']} "
                     f"({num(row['larger_params_m'])} M) {num(row['rate_larger'])} {row['metric'].upper()}, "
                     f"difference {row_interval(row, 'delta', True)} points ({p_phrase(row['p'])}): {verdict(row['p'])}.")
    return lines


FIGURES = (("rate_vs_hours.png", "error rate vs training hours", figure_rate_vs_hours),
           ("delta_per_tier.png", "quantization effect per resource tier", figure_delta_per_tier),
           ("speaker_gaps.png", "speaker-related gaps", figure_speaker_gaps))


def bias_markdown(result: BiasResult, figures: list[tuple[str, str]]) -> str:
    lines = ["# Bias and quantization report", "",
             "Error rates in % (WER; CER where the language is written without spaces), 95 % bootstrap intervals "
             "over utterances in brackets. Tests: paired bootstrap (precision or model changes, same utterances), "
             "permutation test (speaker-group gaps), bootstrap difference-in-differences (gap changes), Spearman "
             "(across languages). p-values treat utterances as independent: with few speakers per group, a gap "
             "is a difference between those voices. Resource tiers from Whisper's training hours: high >= 1000 h, "
             "medium >= 100 h, low >= 10 h, very-low < 10 h.", ""]
    skipped = [r for r in result.runs if r.skipped]
    if skipped:
        lines += ["## Not run", ""] + [f"- {r.model} {r.precision}: {r.skipped}" for r in skipped] + [""]
    if result.problems:
        lines += [f"{len(result.problems)} manifest line(s) left out (first: {result.problems[0]}).", ""]
    lines += ["## Variants", "", *markdown_table(
        ["model", "precision", "params (M)", "weights (MB)", "s/utt", "speed-up vs fp32", "RTF", "WER", "CER"],
        ([v["model"], v["precision"], num(v["parameters_m"]), num(v["weight_mb"]), num(v["s_per_utt"], 3),
          f"{num(v.get('speedup_vs_fp32'), 2)}x", num(v["rtf"], 3), num(v["wer"]), num(v["cer"])]
         for v in result.variants if v["status"] == "ok" and "utterances" in v))]
    lines += ["", "## Per language", "", *markdown_table(
        ["model", "precision", "language", "hours", "tier", "utts", "speakers", "source", "WER", "CER"],
        ([r["model"], r["precision"], r["language"], num(r["training_hours"], 0), r["tier"], r["utterances"],
          r["speakers"], r["sources"], row_interval(r, "wer"), row_interval(r, "cer")] for r in result.languages))]
    lines += ["", "## Quantization effect (vs the same model's fp32)", "", *markdown_table(
        ["model", "precision", "scope", "group", "metric", "fp32", "quantized", "change [95 % CI]", "relative", "p"],
        ([r["model"], r["precision"], r["scope"], r["group"], r["metric"].upper(), num(r["base_rate"]),
          num(r["rate"]), row_interval(r, "delta", True), f"{signed(r['relative_delta_pct'])} %", p_value(r["p"])]
         for r in result.quantization))]
    lines += ["", "## Speaker groups", "", *markdown_table(
        ["model", "precision", "language", "column", "group", "versus", "utts", "speakers", "rates",
         "gap [95 % CI]", "p", "gap change vs fp32", "p"],
        ([r["model"], r["precision"], r["language"], r["column"], r["group"], r["versus"], r["utterances"],
          r["speakers"], f"{num(r['rate'])} / {num(r['rate_versus'])}", row_interval(r, "gap", True),
          p_value(r["p"]), row_interval(r, "gap_change", True) if "gap_change" in r else "-",
          p_value(r.get("gap_change_p", float("nan")))]
         for r in result.speakers))]
    if result.model_size:
        lines += ["", "## Model size", "", *markdown_table(
            ["precision", "language", "smaller", "larger", "smaller rate", "larger rate", "difference [95 % CI]",
             "p"],
            ([r["precision"], r["language"], r["smaller"], r["larger"], num(r["rate_smaller"]),
              num(r["rate_larger"]), row_interval(r, "delta", True), p_value(r["p"])] for r in result.model_size))]
    lines += ["", "## Findings", "", *findings(result), "", "## Figures", ""]
    lines += [f"![{title}]({name})\n" for name, title in figures] or ["(no data to plot)"]
    return "\n".join(lines)


def write_bias_report(result: BiasResult, out: Path) -> Path:
    """CSV tables, figures and report.md into `out`; returns the report's path."""
    for name in ("variants", "languages", "quantization", "correlation", "speakers", "model_size"):
        write_csv(out / f"{name}.csv", getattr(result, name))
    written = []
    for name, title, draw in FIGURES:
        (out / name).unlink(missing_ok=True)
        if draw(result, out / name):
            written.append((name, title))
    path = out / "report.md"
    atomic_write_text(path, bias_markdown(result, written))
    return path
