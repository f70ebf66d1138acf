"""Hugging Face `datasets` -> manifest.

Audio is read undecoded (`Audio(decode=False)`): recent `datasets` decode through torchcodec, which needs its own
torch build; reading the stored bytes/paths and decoding with soundfile avoids that.  Clips without a file on disk
are written as wav under the output folder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from distilwhisper.audio import load_audio, save_wav
from distilwhisper.data.commonvoice import normalize_gender
from distilwhisper.data.manifest import Utterance
from distilwhisper.languages import is_known

TEXT_COLUMNS = ("sentence", "text", "transcription", "raw_transcription", "normalized_text")


def load_hf_dataset(source: str, out_dir: str | Path, language: str, split: str = "test", config: str | None = None,
                    audio_column: str = "audio", text_column: str | None = None, limit: int | None = None
                    ) -> list[Utterance]:
    """Load a dataset saved with `save_to_disk` (a folder) or by hub name (online) into utterances."""
    import datasets

    if not is_known(language):
        raise ValueError(f"unknown language code {language!r}")
    path = Path(source)
    if path.is_dir():
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{path}: no split {split!r} (found {', '.join(ds)})")
            ds = ds[split]
    else:
        ds = datasets.load_dataset(source, config, split=split)
    columns = ds.column_names
    if audio_column not in columns:
        raise ValueError(f"{source}: no audio column {audio_column!r} (columns: {', '.join(columns)})")
    text_column = text_column or next((c for c in TEXT_COLUMNS if c in columns), None)
    if text_column is None or text_column not in columns:
        raise ValueError(f"{source}: no text column found (tried {', '.join(TEXT_COLUMNS)}; columns: "
                         f"{', '.join(columns)}); pass text_column=")
    ds = ds.cast_column(audio_column, datasets.Audio(decode=False))
    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    utterances = []
    for i, row in enumerate(ds):
        if limit is not None and i >= limit:
            break
        audio = row[audio_column]
        uid = f"hf-{language}-{split}-{i:06d}"
        stored = Path(audio["path"]) if audio.get("path") else None
        if stored is not None and stored.is_file():
            audio_path = stored
        else:
            if not audio.get("bytes"):
                raise ValueError(f"{source}: row {i} has neither an audio file nor audio bytes")
            audio_path = out_dir / "audio" / f"{uid}.wav"
            if not audio_path.exists():
                save_wav(audio_path, _decode_bytes(audio["bytes"], audio.get("path") or "clip.wav"))
        utterances.append(Utterance(
            id=uid, audio=str(audio_path), text=str(row[text_column]), language=language,
            speaker=str(row.get("client_id") or row.get("speaker_id") or ""),
            gender=normalize_gender(str(row.get("gender") or "")), age=str(row.get("age") or ""),
            split=split, domain=path.name if path.is_dir() else source, source="hf"))
    return utterances



def _decode_bytes(data: bytes, name: str) -> np.ndarray:
    """In-memory audio decoded by `audio.load_audio` (soundfile, or ffmpeg for other formats) via a temp file that
    keeps the stored name's extension."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (Path(name).name or "clip")
        path.write_bytes(data)
        return load_audio(path)
