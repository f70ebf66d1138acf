"""Tables, sentences and the figure that compare evaluated systems (`experiments.System`): per set WER/CER and the
translate task's BLEU/chrF, each system's change against the first with a paired bootstrap interval."""

from __future__ import annotations

from pathlib import Path

from distilwhisper import stats
from distilwhisper.report import markdown_table, num, p_phrase, pyplot, row_interval, save_figure
from distilwhisper.data.fillets import SCENE
from distilwhisper.results import rate, read_results, translation_score, where
from distilwhisper.studies.demo_corpus import SETS
from distilwhisper.studies.experiments import TRANSLATE, System


def _system_rows(system: System) -> list[dict]:
    return read_results(system.directory / "results.jsonl")


def _translation_rows(system: System) -> list[dict]:
    return read_results(system.directory / TRANSLATE / "results.jsonl")


def results_table(systems: list[System], sets: tuple[str, ...] = SETS) -> list[dict]:
    """Per system and set (a `domain` of the evaluation manifest): WER/CER pooled over the set's languages, and
    BLEU/chrF of the translate task; change against the first system (paired bootstrap); speed."""
    base_rows, base_translated = _system_rows(systems[0]), _translation_rows(systems[0])
    table = []
    for system in systems:
        rows = _system_rows(system)
        entry = {"system": system.name, "trainable_m": system.trainable / 1e6, "loaded_m": system.loaded / 1e6,
                 "routed_to_experts": system.routed, "kept_step": system.kept_step,
                 "kept_steps": system.kept_steps,
                 "train_minutes": system.train_seconds / 60,
                 "s_per_utt": sum(r["decode_seconds"] for r in rows) / max(len(rows), 1)}
        for name in sets:
            got, base = where(rows, domain=name), where(base_rows, domain=name)
            delta = stats.paired_delta(base, got, "wer", seed=len(table))
            scenes = (stats.paired_delta(base, got, "wer", seed=len(table), cluster=SCENE)
                      if any(r.get(SCENE) for r in got) else stats.NAN)  # lines of one scene resampled together
            entry.update({f"{name}_wer": rate(got, "wer"), f"{name}_cer": rate(got, "cer"),
                          f"{name}_delta": delta.value, f"{name}_delta_low": delta.low,
                          f"{name}_delta_high": delta.high, f"{name}_p": delta.p, f"{name}_n": len(got),
                          f"{name}_scene_low": scenes.low, f"{name}_scene_high": scenes.high,
                          f"{name}_scene_p": scenes.p, f"{name}_scenes": scenes.n})
        translated = _translation_rows(system)
        delta = stats.paired_translation_delta(base_translated, translated, "bleu", seed=len(table))
        entry.update({f"{TRANSLATE}_bleu": translation_score(translated, "bleu"),
                      f"{TRANSLATE}_chrf": translation_score(translated, "chrf"), f"{TRANSLATE}_delta": delta.value,
                      f"{TRANSLATE}_delta_low": delta.low, f"{TRANSLATE}_delta_high": delta.high,
                      f"{TRANSLATE}_p": delta.p, f"{TRANSLATE}_n": len(translated)})
        table.append(entry)
    return table


def language_table(systems: list[System]) -> list[dict]:
    """WER/CER per system, set and language, and the change against the first system on the same utterances
    (paired bootstrap over utterances and, where the lines come from scenes, over whole scenes): a set's own
    languages apart, since real and synthetic speech are not to be pooled (a set may hold both)."""
    base_rows = _system_rows(systems[0])
    table = []
    for k, system in enumerate(systems):
        rows = _system_rows(system)
        for name in SETS:
            for language in sorted({r["language"] for r in rows if r.get("domain") == name}):
                got, base = where(rows, domain=name, language=language), where(base_rows, domain=name,
                                                                               language=language)
                delta = stats.paired_delta(base, got, "wer", seed=k)
                scenes = (stats.paired_delta(base, got, "wer", seed=k, cluster=SCENE)
                          if any(r.get(SCENE) for r in got) else stats.NAN)
                table.append({"system": system.name, "set": name, "language": language, "utterances": len(got),
                              "wer": rate(got, "wer"), "cer": rate(got, "cer"), "delta": delta.value,
                              "delta_low": delta.low, "delta_high": delta.high, "p": delta.p,
                              "scene_low": scenes.low, "scene_high": scenes.high, "scene_p": scenes.p,
                              "scenes": scenes.n})
    return table


def language_markdown(languages: list[dict]) -> list[str]:
    """The per-language table: WER/CER and the change against the first system with its intervals."""
    def change(r: dict) -> str:
        if r["delta"] != r["delta"]:
            return "-"
        text = f"{row_interval(r, 'delta', True)}, {p_phrase(r['p'])}"
        return text + (f"; by scene ({r['scenes']}) [{r['scene_low']:+.1f}, {r['scene_high']:+.1f}], "
                       f"{p_phrase(r['scene_p'])}" if r["scenes"] else "")

    return markdown_table(["system", "set", "language", "utts", "WER", "CER", "change of WER vs the first row"],
                          ([r["system"], r["set"], r["language"], r["utterances"], num(r["wer"]), num(r["cer"]),
                            change(r)] for r in languages))


def table_markdown(table: list[dict], sets: tuple[str, ...] = SETS) -> str:
    def row(e: dict) -> list[str]:
        trained = e["trainable_m"] > 0
        return [e["system"], *(f"{num(e[f'{s}_wer'])} / {num(e[f'{s}_cer'])}" for s in sets),
                *([f"{num(e[f'{TRANSLATE}_bleu'])} / {num(e[f'{TRANSLATE}_chrf'])}"] if translate else []),
                num(e["trainable_m"]) if trained else "-", num(e["loaded_m"]),
                num(e["train_minutes"]) if trained else "-", num(e["s_per_utt"], 2)]

    sets = [s for s in sets if table[0][f"{s}_n"]]
    translate = bool(table[0][f"{TRANSLATE}_n"])
    return "\n".join(markdown_table(["system", *(f"{s} WER / CER" for s in sets),
                                     *(["translate BLEU / chrF"] if translate else []),
                                     "trainable (M)", "loaded (M)", "train (min)", "s/utt"], map(row, table)))


def changes_markdown(entries: list[dict], sets: tuple[str, ...] = SETS) -> list[str]:
    """Each entry's change against its table's first system, per set with utterances: WER points (positive: more
    errors; translate: BLEU points, positive: better) [95 % CI], p of the paired bootstrap over utterances, and
    where the set has scenes, the interval and p of the bootstrap over whole scenes."""
    names = [s for s in (*sets, TRANSLATE) if any(e[f"{s}_n"] for e in entries)]
    return markdown_table(["system", *(f"{s} BLEU" if s == TRANSLATE else s for s in names)], (
        [e["system"], *(f"{row_interval(e, f'{s}_delta', True)}, {p_phrase(e[f'{s}_p'])}{_by_scene(e, s)}"
                        if e[f"{s}_n"] else "-" for s in names)] for e in entries))


def _by_scene(entry: dict, name: str) -> str:
    """'; by scene [low, high], p' where the set's lines come from scenes (the utterance interval understates a
    change when a scene's lines move together)."""
    if not entry.get(f"{name}_scenes"):
        return ""
    low, high, p = entry[f"{name}_scene_low"], entry[f"{name}_scene_high"], entry[f"{name}_scene_p"]
    return f"; by scene ({entry[f'{name}_scenes']} clusters) [{low:+.1f}, {high:+.1f}], {p_phrase(p)}"


def sentence(entry: dict, base: str, name: str) -> str:
    value, low, high, p = (entry[f"{name}_delta"], entry[f"{name}_delta_low"], entry[f"{name}_delta_high"],
                           entry[f"{name}_p"])
    if value != value:
        return f"- {entry['system']}, {name}: no utterances."
    if p < 0.05:
        verdict = "lower than" if value < 0 else "higher than"
        verdict = f"significantly {verdict} {base} ({p_phrase(p)})"
    else:
        verdict = f"not significantly different from {base} ({p_phrase(p)})"
    metric, score = ("BLEU", entry[f"{name}_bleu"]) if name == TRANSLATE else ("WER", entry[f"{name}_wer"])
    return (f"- {entry['system']}, {name}: {metric} {num(score)}, change {value:+.1f} points "
            f"[{low:+.1f}, {high:+.1f}] against {base}: {verdict}{_by_scene(entry, name)}.")


def reported(table: list[dict]) -> list[str]:
    """The sets this run has utterances in, and the translate task when it ran."""
    return [name for name in (*SETS, TRANSLATE) if table[0][f"{name}_n"]]


def figure(table: list[dict], path: Path) -> None:
    """Grouped bars: WER of every system on each evaluation set."""
    sets = [s for s in SETS if table[0][f"{s}_n"]]
    fig, ax = pyplot().subplots(figsize=(7.5, 4))
    width = 0.8 / len(table)
    for k, entry in enumerate(table):
        ax.bar([i + k * width for i in range(len(sets))], [entry[f"{s}_wer"] for s in sets], width,
               label=entry["system"])
    ax.set_xticks([i + width * (len(table) - 1) / 2 for i in range(len(sets))], sets)
    save_figure(fig, ax, path, "WER per evaluation set", "", "WER %")
