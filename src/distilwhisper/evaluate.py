"""Decode utterances, normalise, score, and summarise by language and by any metadata column.

`evaluate` is the one decode-and-score loop: it takes a decoder (or a function that builds one, called only when
something is left to decode) and the utterances to score.  Rows are appended to `out/results.jsonl` and flushed
after every batch, so an interrupted run loses at most one batch and a rerun with the same `out` decodes only the
utterances not yet there; `out/config.json` records what determines the transcripts, and a rerun under another
setting is refused.  The summary is recomputed from `results.jsonl` alone.  `run_eval` is the `eval` command: it
reads the manifest, selects utterances and loads the model at the requested precision.
"""

from __future__ import annotations

import shutil
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from tqdm import tqdm

from distilwhisper.audio import SAMPLE_RATE, AudioError, audio_duration, load_audio
from distilwhisper.clsr import unknown_tasks
from distilwhisper.data.manifest import TRANSLATION_REFERENCE, Utterance, read_manifest
from distilwhisper.decoding import MAX_NEW_TOKENS, TASKS, Decoder, DecodingOptions
from distilwhisper.distributed import DEFAULT_TIMEOUT_MINUTES, exclusive_on_main, on_main, process_state, share_out
from distilwhisper.io import (append_jsonl, atomic_write_json, atomic_write_text, read_json, read_jsonl, repair_jsonl,
                             rewrite_jsonl)
from distilwhisper.languages import check as check_language
from distilwhisper.normalize import normalize
from distilwhisper.quantize import PRECISIONS, load_variant
from distilwhisper.results import error_counts, read_results, summarize, summary_markdown, translation_stats
from distilwhisper.runs import local_weights_fingerprint

RESULT_METADATA = ("speaker", "gender", "age", "split", "domain", "source")
SHARDS = "shards"  # per-process results of a launch with several processes, merged by the main process
ONE_PASS = DecodingOptions(fallback_temperatures=())  # eval's protocol: greedy, no temperature fallback
WEIGHTS_RECORD = "weights.json"  # fingerprint of the weights the results were decoded with (evaluate(..., weights=))


@dataclass
class EvalConfig:
    """`distilwhisper eval`: decode a manifest and score WER/CER per language and speaker group."""

    model: str = field(metadata={"help": "model reference (offline: bundled:base), or a `train` run folder"})
    data: str = field(metadata={"help": "manifest.jsonl"})
    out: str = field(metadata={"help": "output folder; rerunning with the same folder resumes"})
    language: str | None = field(default=None, metadata={"help": "evaluate only this language"})
    split: str | None = field(default=None, metadata={"help": "evaluate only utterances of this split (e.g. test)"})
    domain: str | None = field(default=None, metadata={"help": "evaluate only this domain (e.g. out-of-domain)"})
    limit: int | None = field(default=None, metadata={"min": 1, "help": "evaluate the first N utterances only"})
    batch_size: int = field(default=8, metadata={"min": 1, "help": "utterances decoded together"})
    beam_size: int = field(default=1, metadata={"min": 1, "help": "1 = greedy (paper setting), >1 = beam search"})
    trim: bool = field(default=False, metadata={"help": "encode only the frames holding audio (faster on short "
                                                        "clips; benchmarks/decode_speed.py measures its cost)"})
    precision: str = field(default="fp32", metadata={"help": "weights/compute precision (quantize.py); one this "
                                                             "machine cannot run stops with the reason",
                                                     "choices": PRECISIONS})
    experts: str | None = field(default=None, metadata={"help": "DistilWhisper experts (a `train` run folder or "
                                                                "its best/) to load onto --model"})
    expert_tasks: list[str] = field(default_factory=list, metadata={
        "help": "with experts (--experts, or a DistilWhisper/CLSR-FT run folder as --model): the tasks they decode, "
                "e.g. transcribe,translate to measure what experts "
                "trained on transcription do to translation (default: the tasks they were trained for, saved with "
                "them: transcribe, and translate after train --keep-translate); other tasks run on the shared FFNs, "
                "i.e. the base model"})
    threads: int | None = field(default=None, metadata={"min": 1,
                                                        "help": "torch intra-op threads (default: all cores)"})
    task: str = field(default="transcribe", metadata={
        "help": f"transcribe (WER/CER) or translate: speech to English text, scored by BLEU and chrF against the "
                f"manifest's {TRANSLATION_REFERENCE} column", "choices": TASKS})
    timeout_minutes: float = field(default=DEFAULT_TIMEOUT_MINUTES, metadata={
        "help": "under accelerate launch: how long a process that finished its share waits for the others"})

    def __post_init__(self) -> None:
        if self.expert_tasks:
            unknown = unknown_tasks(self.expert_tasks)
            if unknown:
                raise ValueError(f"--expert-tasks: {', '.join(unknown)} is not a task ({', '.join(TASKS)})")

    def options(self) -> DecodingOptions:
        """How every utterance is decoded: one pass (greedy or beam search), the paper's protocol."""
        return ONE_PASS.with_(task=self.task, beam_size=self.beam_size)

    def identity(self) -> dict:
        """What determines the transcripts; a resumed evaluation must use the same (the task is recorded when it
        is not transcription, so folders of earlier versions still resume; for translation with experts also which
        tasks the experts decode, since experts once decoded every task)."""
        tasks = ({"expert_tasks": ",".join(self.expert_tasks) or "as trained"}
                 if self.experts or self.expert_tasks else {})
        return {"model": self.model, "beam_size": self.beam_size, "max_new_tokens": MAX_NEW_TOKENS,
                "trim": self.trim, "precision": self.precision, "experts": str(self.experts) if self.experts else None,
                **({"task": self.task, **tasks} if self.task != "transcribe" else {})}


def select(utterances: list[Utterance], language: str | None = None, split: str | None = None,
           domain: str | None = None, limit: int | None = None, source: str = "manifest") -> list[Utterance]:
    """The utterances matching every given filter (the first `limit` of them)."""
    if language is not None:
        check_language(language)
    chosen = [u for u in utterances if (language is None or u.language == language)
              and (split is None or u.split == split) and (domain is None or u.domain == domain)]
    if not chosen:
        raise ValueError(f"{source}: no utterances left after filtering (language={language}, split={split}, "
                         f"domain={domain})")
    return chosen[:limit] if limit is not None else chosen


def run_eval(config: EvalConfig, progress: bool = True) -> dict:
    """The `eval` command: evaluate `config.model` at `config.precision` (with experts) on the manifest; returns
    the summary.  Bad manifest lines are reported in `out/skipped.txt` and left out."""
    if config.threads:
        torch.set_num_threads(config.threads)
    state = process_state(config.timeout_minutes)
    utterances, problems = read_manifest(config.data)
    utterances = select(utterances, config.language, config.split, config.domain, config.limit, config.data)
    if config.task == "translate":
        utterances, untranslated = split_translated(utterances)
        problems += [(f"id {u.id}", f"no {TRANSLATION_REFERENCE} to score a translation against")
                     for u in untranslated]
        if not utterances:
            raise ValueError(f"{config.data}: no utterance has a {TRANSLATION_REFERENCE} column (needed by "
                             "--task translate; `data fillets` writes one)")
    out = Path(config.out)

    def build() -> Decoder:
        variant = load_variant(config.model, config.precision, trim=config.trim, experts=config.experts,
                               languages=sorted({u.language for u in utterances}), threads=config.threads,
                               device=state.device, expert_tasks=config.expert_tasks)
        if state.is_main_process:
            atomic_write_json(out / "variant.json", variant.info())
        return variant.decoder

    evaluate(build, utterances, out, config.identity(), config.batch_size, config.options(),
             problems=[(config.data, line, msg) for line, msg in problems], progress=progress,
             weights=local_weights_fingerprint(config.model, config.experts) if state.is_main_process else None)
    return read_json(out / "summary.json")


def split_translated(utterances: list[Utterance]) -> tuple[list[Utterance], list[Utterance]]:
    """(utterances with an English reference, those without)."""
    has, lacks = [], []
    for u in utterances:
        (has if u.extra.get(TRANSLATION_REFERENCE, "").strip() else lacks).append(u)
    return has, lacks


def evaluate(decoder: Decoder | Callable[[], Decoder], utterances: list[Utterance], out: str | Path,
             identity: dict, batch_size: int = 8, options: DecodingOptions = ONE_PASS,
             problems: Iterable[tuple[str, int | str, str]] = (), progress: bool = True, fresh: bool = False,
             weights: str | None = None) -> list[dict]:
    """Decode (under `options`: their task decides the scores, WER/CER or BLEU/chrF) and score `utterances` into
    `out/` (resuming what an earlier run with the same `identity` left;
    `fresh` starts over); writes `summary.json`/`summary.md` and returns the result rows.  `problems` are bad
    manifest lines (file, line or utterance, message) to report in `out/skipped.txt`.  One run at a time per folder.
    `weights` fingerprints the model's weights where a name does not fix them (a run folder retrained in place):
    results of other weights are decoded again, said so (`out/weights.json`; folders without one are kept).

    Under `accelerate launch` / `torchrun` with N processes, the main process plans the batches a single process
    would decode and shares them out by audio length; each process appends its rows to `out/shards/rank<R>.jsonl`
    and the main process merges them into `results.jsonl` in the single-process order, so N processes give the
    rows of one.  A rerun, with any N, decodes only what no shard and no `results.jsonl` holds yet."""
    state, out, problems = process_state(), Path(out), list(problems)
    with exclusive_on_main(out, state):
        plan = on_main(lambda: _plan(utterances, out, identity, batch_size, problems, fresh, weights,
                                     state.num_processes), state)
        share = share_out([sum(seconds for _, seconds in batch) for batch in plan], state.num_processes)
        by_id = {u.id: u for u in utterances}
        mine = [[by_id[uid] for uid, _ in plan[i]] for i in share[state.process_index]]
        if mine:
            _decode_all(decoder() if callable(decoder) else decoder, mine, out, options, progress,
                        _shard(out, state.process_index) if state.num_processes > 1 else None)
        state.wait_for_everyone()
        return on_main(lambda: _merge_and_summarize(out, [uid for batch in plan for uid, _ in batch],
                                                    len(problems)), state)


def _plan(utterances: list[Utterance], out: Path, identity: dict, batch_size: int,
          problems: list[tuple[str, int | str, str]], fresh: bool, weights: str | None, processes: int
          ) -> list[list[tuple[str, float]]]:
    """Main process: check/record the setting (of the folder and of its shards) and the bad lines; the batches
    (id, seconds) left to decode, in the order one process decodes them."""
    results_path = out / "results.jsonl"
    if _other_weights(out, weights) or fresh:
        results_path.unlink(missing_ok=True)
        shutil.rmtree(out / SHARDS, ignore_errors=True)
    if weights is not None:
        atomic_write_json(out / WEIGHTS_RECORD, {"fingerprint": weights})
    _check_resume(out, identity)
    if (out / SHARDS).exists() or processes > 1:
        _check_resume(out / SHARDS, identity)
    atomic_write_text(out / "skipped.txt", "".join(f"{source}:{line}: {msg}\n" for source, line, msg in problems))
    if problems:
        tqdm.write(f"{len(problems)} bad manifest line(s) left out; see {out / 'skipped.txt'}:")
        for source, line, msg in problems[:10]:
            tqdm.write(f"  {source}:{line}: {msg}")
    done = {r["id"] for r in _set_aside_stale(results_path, {u.id for u in utterances})}
    done |= {r["id"] for r in _shard_rows(out)}
    todo = [u for u in utterances if u.id not in done]
    durations = {u.id: _duration_or_zero(u.audio) for u in todo}
    return [[(u.id, durations[u.id]) for u in batch] for batch in _batches(todo, durations, batch_size)]


def _set_aside_stale(results_path: Path, current: set[str]) -> list[dict]:
    """The rows of `results.jsonl` for utterances of the manifest as it is now.  Rows of utterances it no longer
    holds (a rebuilt or edited manifest) would otherwise count in every summary and table made from the file: they
    move to `results.stale.jsonl` (kept, not deleted), and the file is rewritten without them."""
    rows = repair_jsonl(results_path, keep=lambda row: "id" in row)
    stale = [r for r in rows if r["id"] not in current]
    if not stale:
        return rows
    stale_path = results_path.with_name("results.stale.jsonl")
    kept_before = {r["id"] for r in read_jsonl(stale_path)[0]}  # a rerun after a kill here adds nothing twice
    with stale_path.open("a", encoding="utf-8") as f:
        append_jsonl(f, [r for r in stale if r["id"] not in kept_before])
    rows = [r for r in rows if r["id"] in current]
    rewrite_jsonl(results_path, rows)
    tqdm.write(f"{len(stale)} result(s) of utterances no longer in the manifest moved to {stale_path}")
    return rows


def _shard(out: Path, rank: int) -> Path:
    return out / SHARDS / f"rank{rank}.jsonl"


def _shard_rows(out: Path) -> list[dict]:
    """Rows of every results shard, in rank order (a torn last row, from a killed process, left out)."""
    rows = []
    for path in sorted((out / SHARDS).glob("rank*.jsonl"), key=lambda p: int(p.stem[4:])):
        rows += repair_jsonl(path, keep=lambda row: "id" in row)
    return rows


def _merge_and_summarize(out: Path, planned: list[str], skipped_lines: int) -> list[dict]:
    """Main process: fold the shards into `results.jsonl` (rows of earlier runs first, then this run's in the planned
    order; an id once), their skipped clips into `skipped.txt`, remove them; then the summaries."""
    results_path, shards = out / "results.jsonl", out / SHARDS
    if shards.exists():
        rows = repair_jsonl(results_path, keep=lambda row: "id" in row)
        seen = {r["id"] for r in rows}
        new = {r["id"]: r for r in _shard_rows(out) if r["id"] not in seen}
        order = {uid: i for i, uid in enumerate(planned)}
        rows += sorted(new.values(), key=lambda r: order.get(r["id"], -1))  # earlier runs' shards (-1) first
        rewrite_jsonl(results_path, rows)
        with (out / "skipped.txt").open("a", encoding="utf-8") as skipped:
            for path in sorted(shards.glob("skipped-rank*.txt")):
                skipped.write(path.read_text(encoding="utf-8"))
        shutil.rmtree(shards)
    rows = read_results(results_path)
    summary = summarize(rows)
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    summary["skipped_lines"] = skipped_lines
    atomic_write_json(out / "summary.json", summary, ensure_ascii=False)
    return rows


def _other_weights(out: Path, weights: str | None) -> bool:
    """Whether `out` holds results decoded with other weights than `weights` (said, as they will be decoded again)."""
    record = out / WEIGHTS_RECORD
    if weights is None or not record.exists() or read_json(record).get("fingerprint") == weights:
        return False
    tqdm.write(f"{out}: the model's weights changed since these results were decoded; decoding them again")
    return True


def _check_resume(out: Path, identity: dict) -> None:
    path = out / "config.json"
    if path.exists():
        previous = read_json(path)
        if previous != identity:
            raise ValueError(f"{out} holds results of another setting ({previous}); use a new --out or the same "
                             f"options ({identity})")
    else:
        atomic_write_json(path, identity)


def _batches(utterances: list[Utterance], durations: dict[str, float], size: int) -> Iterable[list[Utterance]]:
    """Language-homogeneous batches of similar length (less padding work, and one expert set per batch)."""
    by_language: dict[str, list[Utterance]] = defaultdict(list)
    for utt in utterances:
        by_language[utt.language].append(utt)
    for language in sorted(by_language):
        ordered = sorted(by_language[language], key=lambda u: durations.get(u.id, 0.0))
        for i in range(0, len(ordered), size):
            yield ordered[i:i + size]


def _duration_or_zero(path: str) -> float:
    """Sort key only: a file that broke since validation sorts first and is reported when its batch loads it."""
    try:
        return audio_duration(path)
    except AudioError:
        return 0.0


def _row(utt: Utterance, text: str, num_samples: int, seconds: float, task: str) -> dict:
    if task == "translate":  # sacrebleu tokenises the raw English text itself
        reference = utt.extra[TRANSLATION_REFERENCE]
        scored = {"reference": reference, "hypothesis": text, **translation_stats(reference, text)}
    else:
        ref_norm, hyp_norm = normalize(utt.text, utt.language), normalize(text, utt.language)
        scored = {"reference": utt.text, "hypothesis": text, "reference_norm": ref_norm, "hypothesis_norm": hyp_norm,
                  **asdict(error_counts(ref_norm, hyp_norm))}
    row = {"id": utt.id, "language": utt.language, **scored,
           "audio_seconds": round(num_samples / SAMPLE_RATE, 3), "decode_seconds": round(seconds, 4)}
    row.update({k: utt.metadata(k) for k in RESULT_METADATA})
    row.update(utt.extra)
    return row


def _decode_all(decoder: Decoder, batches: list[list[Utterance]], out: Path, options: DecodingOptions,
                progress: bool, shard: Path | None) -> None:
    """Decode the planned batches; audio is read per batch, so memory stays at one batch whatever the corpus size.
    Rows go to `results.jsonl`, or to this process's `shard`; a clip that fails to decode is reported and skipped."""
    results_path = shard or out / "results.jsonl"
    skipped_path = shard.with_name(f"skipped-{shard.stem}.txt") if shard else out / "skipped.txt"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    rank = f" ({shard.stem})" if shard else ""
    bar = tqdm(total=sum(map(len, batches)), unit="utt", desc=f"decoding{rank}", disable=not progress,
               smoothing=0.1)
    with results_path.open("a", encoding="utf-8") as results, skipped_path.open("a", encoding="utf-8") as skipped:
        for batch in batches:
            audios, kept = [], []
            for utt in batch:
                try:
                    audios.append(load_audio(utt.audio))
                    kept.append(utt)
                except AudioError as err:
                    skipped.write(f"{utt.id}: {err}\n")
                    skipped.flush()
                    tqdm.write(f"skipped {utt.id}: {err}")
            bar.update(len(batch) - len(kept))
            if not kept:
                continue
            start = time.perf_counter()
            transcripts = decoder.transcribe(audios, kept[0].language, options)
            per_utt = (time.perf_counter() - start) / len(kept)
            append_jsonl(results, [_row(utt, tr.text, len(audio), per_utt, options.task)
                                   for utt, audio, tr in zip(kept, audios, transcripts)])
            bar.update(len(kept))
    bar.close()
