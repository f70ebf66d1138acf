"""Training data: split selection, log-mel + full-prompt token items, padding-aware collation, and batches that
each hold one language (CLSR selects one expert set per batch)."""

from __future__ import annotations

import random

import torch
from torch.utils.data import Dataset

from distilwhisper import losses
from distilwhisper.audio import SAMPLE_RATE, load_audio
from distilwhisper.data.manifest import Utterance


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


class SpeechDataset(Dataset):
    """Log-mel features and full-prompt token sequences of a manifest."""

    def __init__(self, utterances: list[Utterance], processor, prompts: dict[str, list[int]], eot: int):
        self.utterances, self.processor, self.prompts, self.eot = utterances, processor, prompts, eot

    def __len__(self) -> int:
        return len(self.utterances)

    def tokens(self, utt: Utterance) -> list[int]:
        """`<|sot|><|lang|><|transcribe|><|notimestamps|> text <|eot|>` (the language token included)."""
        text = self.processor.tokenizer.encode(" " + utt.text.strip(), add_special_tokens=False)
        return self.prompts[utt.language] + text + [self.eot]

    def __getitem__(self, i: int) -> dict:
        utt = self.utterances[i]
        audio = load_audio(utt.audio)
        feats = self.processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE,
                                                 return_tensors="pt").input_features[0]
        return {"id": utt.id, "language": utt.language, "input_features": feats, "tokens": self.tokens(utt),
                "prompt_length": len(self.prompts[utt.language]), "num_samples": len(audio)}


def collate(items: list[dict], pad: int) -> dict:
    """Decoder inputs = tokens[:-1], labels = tokens[1:] with the forced prompt tokens and padding ignored."""
    length = max(len(it["tokens"]) for it in items) - 1
    dec_in = torch.full((len(items), length), pad, dtype=torch.long)
    labels = torch.full((len(items), length), losses.IGNORE, dtype=torch.long)
    dec_mask = torch.zeros((len(items), length), dtype=torch.float32)
    for row, it in enumerate(items):
        toks = torch.tensor(it["tokens"])
        n = len(toks) - 1
        dec_in[row, :n] = toks[:-1]
        labels[row, :n] = toks[1:]
        labels[row, : it["prompt_length"] - 1] = losses.IGNORE  # language/task tokens are forced, not predicted
        dec_mask[row, :n] = 1.0
    return {"ids": [it["id"] for it in items], "language": items[0]["language"],
            "num_samples": [it["num_samples"] for it in items],
            "input_features": torch.stack([it["input_features"] for it in items]),
            "decoder_input_ids": dec_in, "labels": labels, "decoder_mask": dec_mask}


class LanguageBatches(torch.utils.data.Sampler):
    """Shuffled batches that each hold one language; the order depends only on (seed, epoch), so a resumed run
    sees the same batches as an uninterrupted one.

    In a launch of `processes` processes a global batch holds `batch_size` x `processes` utterances and is yielded
    as `processes` consecutive slices, which accelerate's sampler sharding deals out one per process (batch i to
    process i mod N): per optimizer step the processes together train on the batch one process would train on with
    the global batch size.  A global batch with fewer utterances than processes lends its utterances again to the
    processes that would get none (every process must take part in each step)."""

    batch_size = None  # batches vary in length: accelerate's sharding must neither drop nor pad the short ones

    def __init__(self, languages: list[str], batch_size: int, seed: int, processes: int = 1):
        self.languages, self.size, self.seed, self.processes, self.epoch = languages, batch_size, seed, processes, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1000 + self.epoch)
        batches, size = [], self.size * self.processes
        for lang in sorted(set(self.languages)):
            idx = [i for i, l in enumerate(self.languages) if l == lang]
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
