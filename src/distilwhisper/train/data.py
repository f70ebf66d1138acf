"""Training data: split selection, log-mel + full-prompt token items, padding-aware collation, and batches that
each hold one language (CLSR selects one expert set per batch)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from distilwhisper import losses
from distilwhisper.audio import SAMPLE_RATE, audio_duration, load_audio
from distilwhisper.data.manifest import PSEUDO_LABEL, TRANSLATION_REFERENCE, Utterance, validate_manifest


def select_split(utterances: list[Utterance], split: str, source: str) -> list[Utterance]:
    """A manifest that labels splits (Common Voice, FLEURS, synth) gives only its `split` lines; one without
    split labels is used whole."""
    if not any(u.split for u in utterances):
        return utterances
    chosen = [u for u in utterances if u.split == split]
    if not chosen:
        raise ValueError(f"{source}: no utterance has split {split!r} (splits: "
                         f"{', '.join(sorted({u.split for u in utterances}))})")
    return chosen


def training_utterances(config, processes: int) -> list[Utterance]:
    """The training split of `config.train` (a `TrainConfig`), checked against the run's settings before anything
    loads: languages outside --languages, --keep-translate without English lines, and the settings that need a
    single process."""
    utterances = select_split(validate_manifest(config.train), "train", config.train)
    outside = sorted({u.language for u in utterances} - set(config.languages))
    if outside:
        raise ValueError(f"{config.train} holds languages outside --languages ({', '.join(outside)}); filter "
                         "the manifest or add them")
    if config.keep_translate and not any(u.metadata(TRANSLATION_REFERENCE) for u in utterances):
        raise ValueError(f"--keep-translate: no training utterance of {config.train} has an English line (column "
                         f"{TRANSLATION_REFERENCE}; `data fillets` writes one)")
    if (config.trim or config.cache_encoder) and processes > 1:
        raise ValueError("--trim/--cache-encoder run the encoder outside the DDP wrapper: use them with one "
                         "process")
    return utterances


def data_summary(source: str, utterances: list[Utterance], joined: int = 0) -> dict:
    """What a run trains on, for its `data.json`: rows per language, how many hold a teacher's pseudo-label
    (`data pseudo-label`), so a result can say how much of its data no person transcribed, and how many joined
    items (`--joined-lines`) it added."""
    per_language: dict[str, int] = {}
    for u in utterances:
        per_language[u.language] = per_language.get(u.language, 0) + 1
    return {"train": source, "utterances": len(utterances), "per_language": per_language,
            "pseudo_labelled": sum(1 for u in utterances if u.extra.get(PSEUDO_LABEL)), "joined_items": joined}


JOINED_SECONDS = 28.0  # a joined item stays inside one 30 s window, with room for Whisper's padding
JOINED_LINES = 3  # at most this many lines per joined item
PAUSE_SECONDS = (0.3, 1.0)  # silence between two joined lines


@dataclass(frozen=True)
class JoinedLines:
    """Consecutive lines of one language joined into one training item, a pause of silence after each but the
    last.  Long-form windows hold several sentences, and experts trained on single lines learn to end the text
    after the first one (measured: half the clips of a joined dev recording lost, benchmarks/word_timing.py).
    The pauses are drawn once, so an item's audio and tokens never change (the teacher and encoder caches key on
    its id)."""

    parts: tuple[Utterance, ...]
    pauses: tuple[float, ...]

    @property
    def id(self) -> str:
        return "+".join(u.id for u in self.parts)

    @property
    def language(self) -> str:
        return self.parts[0].language

    @property
    def text(self) -> str:
        return " ".join(u.text.strip() for u in self.parts)

    def metadata(self, key: str) -> str:
        """A column of every part, joined; '' unless every part has it (an English line for all or none)."""
        values = [u.metadata(key).strip() for u in self.parts]
        return " ".join(values) if all(values) else ""

    def load(self) -> np.ndarray:
        pieces = []
        for part, pause in zip(self.parts, (*self.pauses, 0.0)):
            pieces += [load_audio(part.audio), np.zeros(round(pause * SAMPLE_RATE), np.float32)]
        return np.concatenate(pieces)


def joined_lines(utterances: list[Utterance], share: float, seed: int) -> list[JoinedLines]:
    """`share` x len(utterances) extra items (`--joined-lines`), each starting at a seeded line and taking the lines
    that follow it in the manifest, of its language (a dialogue's next lines), while the item stays under
    JOINED_SECONDS and JOINED_LINES; a line that no next line fits after starts none."""
    if not share:
        return []
    rng, made = random.Random(seed), []
    for language in sorted({u.language for u in utterances}):
        lines = [u for u in utterances if u.language == language]
        for head in sorted(rng.sample(range(len(lines)), min(len(lines), round(share * len(lines))))):
            parts, pauses, seconds = [lines[head]], [], audio_duration(lines[head].audio)
            for line in lines[head + 1:head + JOINED_LINES]:
                pause, length = rng.uniform(*PAUSE_SECONDS), audio_duration(line.audio)
                if seconds + pause + length > JOINED_SECONDS:
                    break
                parts, pauses, seconds = parts + [line], pauses + [pause], seconds + pause + length
            if len(parts) > 1:
                made.append(JoinedLines(tuple(parts), tuple(pauses)))
    return made


class SpeechDataset(Dataset):
    """Log-mel features and full-prompt token sequences of a manifest; with `translate_prompts`, an utterance that
    has an English line (`translation_en`) also carries its translate-task sequence (the term that keeps Whisper's
    translate task, objective.py)."""

    def __init__(self, utterances: list[Utterance | JoinedLines], processor, prompts: dict[str, list[int]], eot: int,
                 translate_prompts: dict[str, list[int]] | None = None):
        self.utterances, self.processor, self.prompts, self.eot = utterances, processor, prompts, eot
        self.translate_prompts = translate_prompts

    def __len__(self) -> int:
        return len(self.utterances)

    def _sequence(self, prompt: list[int], text: str) -> list[int]:
        return prompt + self.processor.tokenizer.encode(" " + text.strip(), add_special_tokens=False) + [self.eot]

    def tokens(self, utt: Utterance | JoinedLines) -> list[int]:
        """`<|sot|><|lang|><|transcribe|><|notimestamps|> text <|eot|>` (the language token included)."""
        return self._sequence(self.prompts[utt.language], utt.text)

    def translate_tokens(self, utt: Utterance | JoinedLines) -> list[int] | None:
        """`<|sot|><|lang|><|translate|><|notimestamps|> English line <|eot|>`, or None without an English line."""
        english = utt.metadata(TRANSLATION_REFERENCE).strip()
        if self.translate_prompts is None or not english:
            return None
        return self._sequence(self.translate_prompts[utt.language], english)

    def __getitem__(self, i: int) -> dict:
        utt = self.utterances[i]
        audio = utt.load() if isinstance(utt, JoinedLines) else load_audio(utt.audio)
        feats = self.processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE,
                                                 return_tensors="pt").input_features[0]
        return {"id": utt.id, "language": utt.language, "input_features": feats, "tokens": self.tokens(utt),
                "translate_tokens": self.translate_tokens(utt),
                "prompt_length": len(self.prompts[utt.language]), "num_samples": len(audio)}


def _teacher_forcing(sequences: list[list[int]], prompt_length: int, pad: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(decoder inputs = tokens[:-1], labels = tokens[1:] with the forced prompt tokens and padding ignored,
    mask of the real positions)."""
    length = max(len(tokens) for tokens in sequences) - 1
    dec_in = torch.full((len(sequences), length), pad, dtype=torch.long)
    labels = torch.full((len(sequences), length), losses.IGNORE, dtype=torch.long)
    dec_mask = torch.zeros((len(sequences), length), dtype=torch.float32)
    for row, tokens in enumerate(sequences):
        toks = torch.tensor(tokens)
        n = len(toks) - 1
        dec_in[row, :n] = toks[:-1]
        labels[row, :n] = toks[1:]
        labels[row, : prompt_length - 1] = losses.IGNORE  # language/task tokens are forced, not predicted
        dec_mask[row, :n] = 1.0
    return dec_in, labels, dec_mask


def collate(items: list[dict], pad: int) -> dict:
    """One batch (one language, so one prompt length); `translate` holds the rows that have a translate-task
    sequence, with their own decoder inputs, labels and mask, when any does."""
    prompt_length = items[0]["prompt_length"]
    dec_in, labels, dec_mask = _teacher_forcing([it["tokens"] for it in items], prompt_length, pad)
    batch = {"ids": [it["id"] for it in items], "language": items[0]["language"],
             "num_samples": [it["num_samples"] for it in items],
             "input_features": torch.stack([it["input_features"] for it in items]),
             "decoder_input_ids": dec_in, "labels": labels, "decoder_mask": dec_mask}
    rows = [row for row, it in enumerate(items) if it.get("translate_tokens")]
    if rows:
        t_in, t_labels, t_mask = _teacher_forcing([items[row]["translate_tokens"] for row in rows], prompt_length, pad)
        batch["translate"] = {"rows": rows, "decoder_input_ids": t_in, "labels": t_labels, "decoder_mask": t_mask}
    return batch


def with_translate_rows(batch: dict) -> dict:
    """The batch with its translate-task rows appended (their clips repeated), so that one forward of the student
    serves both tasks (one forward per step, as DDP expects).  Decoder inputs are right-padded to a common length:
    under causal attention the padding changes nothing before it, and the masks exclude it."""
    translate, rows = batch["translate"], batch["translate"]["rows"]
    length = max(batch["decoder_input_ids"].shape[1], translate["decoder_input_ids"].shape[1])

    def stacked(name: str) -> torch.Tensor:
        parts = [batch[name], translate[name]]
        return torch.cat([F.pad(p, (0, length - p.shape[1])) for p in parts])

    return {"ids": batch["ids"] + [batch["ids"][r] for r in rows], "language": batch["language"],
            "num_samples": batch["num_samples"] + [batch["num_samples"][r] for r in rows],
            "input_features": torch.cat([batch["input_features"], batch["input_features"][rows]]),
            "decoder_input_ids": stacked("decoder_input_ids"), "decoder_mask": stacked("decoder_mask")}


def translate_rows(batch: dict) -> dict:
    """The translate-task rows alone, as a batch of their own (the base model's forward on them)."""
    translate, rows = batch["translate"], batch["translate"]["rows"]
    return {"ids": [batch["ids"][r] for r in rows], "language": batch["language"],
            "num_samples": [batch["num_samples"][r] for r in rows], "input_features": batch["input_features"][rows],
            "decoder_input_ids": translate["decoder_input_ids"], "decoder_mask": translate["decoder_mask"]}


class LanguageBatches(torch.utils.data.Sampler):
    """Shuffled batches that each hold one group of items -- a language, or a language's joined items; the order
    depends only on (seed, epoch), so a resumed run sees the same batches as an uninterrupted one.

    In a launch of `processes` processes a global batch holds `batch_size` x `processes` utterances and is yielded
    as `processes` consecutive slices, which accelerate's sampler sharding deals out one per process (batch i to
    process i mod N): per optimizer step the processes together train on the batch one process would train on with
    the global batch size.  A global batch with fewer utterances than processes lends its utterances again to the
    processes that would get none (every process must take part in each step)."""

    batch_size = None  # batches vary in length: accelerate's sharding must neither drop nor pad the short ones

    def __init__(self, groups: list[str], batch_size: int, seed: int, processes: int = 1):
        """`groups`: each item's group (its language, or its language's joined items)."""
        self.groups, self.size, self.seed, self.processes, self.epoch = groups, batch_size, seed, processes, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1000 + self.epoch)
        batches, size = [], self.size * self.processes
        for group in sorted(set(self.groups)):
            idx = [i for i, g in enumerate(self.groups) if g == group]
            rng.shuffle(idx)
            batches += [idx[i:i + size] for i in range(0, len(idx), size)]
        rng.shuffle(batches)
        return [part for batch in batches for part in _slices(batch, self.processes)]

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        """Batches of all processes together (a multiple of `processes`)."""
        return len(self._batches())


def _slices(batch: list[int], n: int) -> list[list[int]]:
    """`batch` cut into `n` contiguous slices of near-equal length, none empty."""
    return [batch[i * len(batch) // n:(i + 1) * len(batch) // n] or [batch[i % len(batch)]] for i in range(n)]
