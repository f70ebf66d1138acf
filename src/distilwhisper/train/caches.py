"""Caches that take frozen computation out of the training step: the teacher's top-k outputs (on disk, reused
across epochs and runs) and the frozen encoder's outputs (in memory)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save

from distilwhisper.decoding import encode
from distilwhisper.io import atomic_write_bytes, atomic_write_json, read_json


class TeacherCache:
    """Top-k teacher log-probabilities per target position, one safetensors file per utterance.

    The teacher is frozen, so its outputs on a (clip, label sequence) pair never change: computing them once saves
    the teacher's forward in every later epoch and run.  A file stores the tokens it was made for and is ignored
    when they differ (the transcript changed)."""

    def __init__(self, directory: str | Path, fingerprint: str, top_k: int, trim: bool = False, name: str = ""):
        """`fingerprint` identifies the teacher's weights (train.model.weights_fingerprint); `name` only labels."""
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "teacher.json"
        info = {"fingerprint": fingerprint, "top_k": top_k, "trim": trim}
        if meta.exists():
            saved = read_json(meta)
            if {k: saved.get(k) for k in info} != info:
                raise ValueError(f"{self.dir}: cache holds the outputs of another teacher or setting "
                                 f"({meta.read_text().strip()}); use another --teacher-cache for {info}")
        else:
            atomic_write_json(meta, {**info, "name": name}, indent=None)
        self.top_k = top_k

    def _path(self, uid: str) -> Path:
        return self.dir / f"{uid.replace('/', '_')}.safetensors"

    def get(self, ids: list[str], dec_in: torch.Tensor, mask: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Cached (values, indices) for the batch, or None unless every row's whole token sequence (`mask`: its
        real length) is the one its entry was made for.  Entries live on the CPU; the caller moves them."""
        dec_in, mask = dec_in.cpu(), mask.cpu()
        values, indices = [], []
        for row, uid in enumerate(ids):
            path = self._path(uid)
            if not path.exists():
                return None
            data = load_file(str(path))
            n = data["tokens"].shape[0]
            if n != int(mask[row].sum()) or not torch.equal(data["tokens"], dec_in[row, :n]):
                return None
            v = torch.zeros(dec_in.shape[1], self.top_k)
            k = torch.zeros(dec_in.shape[1], self.top_k, dtype=torch.long)
            v[:n], k[:n] = data["values"].float(), data["indices"].long()
            values.append(v)
            indices.append(k)
        return torch.stack(values), torch.stack(indices)

    def put(self, ids: list[str], dec_in: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor) -> None:
        top = torch.log_softmax(logits.float(), -1).topk(self.top_k, dim=-1)
        values, top_indices, dec_in, mask = top.values.cpu(), top.indices.cpu(), dec_in.cpu(), mask.cpu()
        for row, uid in enumerate(ids):
            n = int(mask[row].sum())
            atomic_write_bytes(self._path(uid), save({
                "tokens": dec_in[row, :n].contiguous(), "values": values[row, :n].half().contiguous(),
                "indices": top_indices[row, :n].int().contiguous()}))


class EncoderCache:
    """Encoder outputs per (utterance, encoded frames), in memory.

    With experts in the decoder only, the encoder is frozen and (Whisper's dropout being 0) deterministic, so a
    clip's encoding never changes: computing it once removes the encoder -- most of a step's cost for short clips --
    from every later epoch.  Memory: frames/2 x d_model floats per clip (1.5 MB for whisper-base on a trimmed 15 s
    window), so it suits small training sets such as the demo's."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, int], torch.Tensor] = {}
        self.decoded: dict = {}  # the dev decoder's own encodings (WhisperDecoder's memo: its batches, its frames)
        self.key: tuple | None = None

    def bind(self, key: tuple) -> None:
        """Serve a run whose encodings are identified by `key` (encoder weights, precision, training manifest).
        Runs of one process may share the cache -- the demo's FT specialist and the students it teaches keep the
        same frozen encoder, so the later runs skip the encoder entirely; a run with another key empties it."""
        if key != self.key:
            self.store.clear()
            self.decoded.clear()
            self.key = key

    def encode(self, whisper, batch: dict, frames: int) -> torch.Tensor:
        keys = [(uid, frames) for uid in batch["ids"]]
        if all(k in self.store for k in keys):
            return torch.stack([self.store[k] for k in keys])
        with torch.no_grad():
            enc = encode(whisper, batch["input_features"], frames)
        self.store.update({k: e for k, e in zip(keys, enc)})
        return enc
