"""Offline text-to-speech voices (Festival, espeak-ng) and acoustic conditions (sox, numpy noise).

Each voice carries the speaker metadata the bias analysis needs (gender, age) and the domain it belongs to:
in-domain voices make train/dev/test, out-of-domain voices (other voices or another engine) make a test set only,
mirroring the paper's Common Voice (in-domain) vs FLEURS (out-of-domain) evaluation.

Festival reads 8-bit text only: Czech voices take ISO-8859-2, the Catalan voice ISO-8859-15.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distilwhisper.audio import SAMPLE_RATE, load_audio, save_wav
from distilwhisper.io import atomic_write_bytes

FESTIVAL_VOICES = Path("/usr/share/festival/voices")
IN_DOMAIN, OUT_OF_DOMAIN = "in-domain", "out-of-domain"


class TTSError(RuntimeError):
    """A voice that is missing or failed; the message says what is installed."""


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker."""

    engine: str  # "festival" or "espeak-ng"
    name: str  # Festival voice name, or espeak-ng voice+variant
    language: str
    gender: str
    age: str
    domain: str
    encoding: str = "utf-8"  # what the engine reads
    speed: int = 160  # espeak-ng words per minute

    @property
    def speaker(self) -> str:
        return f"{self.engine}:{self.name}"


# Festival voices with their facts (Debian packages festvox-ca-ona-hts, festvox-czech-*)
FESTIVAL = {
    "ca": [Voice("festival", "upc_ca_ona_hts", "ca", "female", "adult", IN_DOMAIN, "iso-8859-15")],
    "cs": [Voice("festival", "czech_dita", "cs", "female", "adult", IN_DOMAIN, "iso-8859-2"),
           Voice("festival", "czech_machac", "cs", "male", "adult", IN_DOMAIN, "iso-8859-2"),
           Voice("festival", "czech_ph", "cs", "male", "adult", OUT_OF_DOMAIN, "iso-8859-2"),
           Voice("festival", "czech_krb", "cs", "male", "child", OUT_OF_DOMAIN, "iso-8859-2")],
}


def festival_installed(voice: Voice) -> bool:
    return shutil.which("text2wave") is not None and any(FESTIVAL_VOICES.glob(f"*/{voice.name}"))


def espeak_installed(language: str) -> bool:
    if shutil.which("espeak-ng") is None:
        return False
    out = subprocess.run(["espeak-ng", f"--voices={language}"], capture_output=True, text=True).stdout
    return any(line.split()[1] == language for line in out.splitlines()[1:] if len(line.split()) > 1)


def espeak_variants() -> dict[str, str]:
    """espeak-ng's installed voice variants (the name after '+', e.g. f2) and their gender, as espeak-ng lists them.
    espeak-ng reads an unknown variant in its default voice without a word, so callers check names against this."""
    if shutil.which("espeak-ng") is None:
        return {}
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True).stdout
    variants = {}
    for line in out.splitlines()[1:]:
        fields = line.split(maxsplit=4)  # priority, "variant", age/gender, name, file (which may hold spaces)
        if len(fields) == 5 and fields[4].startswith("!v/"):
            name = fields[4][3:].split("  ")[0].strip()
            variants[name] = "female" if fields[2].endswith("F") else "male"
    return variants


def voices_for(language: str) -> list[Voice]:
    """Installed voices of a language: Festival's where present, topped up with espeak-ng variants so each domain
    has a female and a male voice."""
    voices = [v for v in FESTIVAL.get(language, []) if festival_installed(v)]
    if espeak_installed(language):
        for domain, variants in ((IN_DOMAIN, ("f1", "m1")), (OUT_OF_DOMAIN, ("f4", "m4"))):
            for variant in variants:
                gender = "female" if variant.startswith("f") else "male"
                if not any(v.domain == domain and v.gender == gender for v in voices):
                    voices.append(Voice("espeak-ng", f"{language}+{variant}", language, gender, "adult", domain,
                                        speed=160 if domain == IN_DOMAIN else 140))
    return voices


def installed_languages() -> list[str]:
    """Languages with at least one voice (espeak-ng's list plus Festival's)."""
    langs = {lang for lang, vs in FESTIVAL.items() if any(festival_installed(v) for v in vs)}
    if shutil.which("espeak-ng"):
        out = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True).stdout
        langs |= {line.split()[1] for line in out.splitlines()[1:] if len(line.split()) > 1}
    return sorted(langs)


def _run(cmd: list[str], voice: Voice) -> None:
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise TTSError(f"{voice.speaker} failed: {proc.stderr.decode(errors='replace').strip()[:300]}")


# Typographic punctuation that 8-bit encodings lack and that carries no sound: read as its ASCII counterpart
_TO_8BIT = str.maketrans({"\u2013": ",", "\u2014": ",", "\u2019": "'", "\u2018": "'"})


def synthesize(voice: Voice, text: str) -> np.ndarray:
    """Speak `text` with `voice`; returns 16 kHz mono float32."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        if voice.engine == "festival":
            try:
                encoded = text.translate(_TO_8BIT).encode(voice.encoding)
            except UnicodeEncodeError as err:
                raise TTSError(f"{voice.speaker}: text not representable in {voice.encoding}: {text!r}") from err
            (Path(tmp) / "text.txt").write_bytes(encoded)
            _run(["text2wave", "-o", str(raw), "-eval", f"(voice_{voice.name})", str(Path(tmp) / "text.txt")], voice)
        else:
            _run(["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-w", str(raw), text], voice)
        audio = load_audio(raw)
    if np.abs(audio).max() < 1e-3:
        raise TTSError(f"{voice.speaker} produced silence for {text!r}")
    return audio


def apply_condition(audio: np.ndarray, condition: str, seed: int) -> np.ndarray:
    """Acoustic condition: `clean`, `noise:<snr dB>` (white noise), `speed:<factor>`, `pitch:<cents>`,
    `reverb:<0-100>` (sox)."""
    if condition == "clean":
        return audio
    kind, _, value = condition.partition(":")
    if kind == "noise":
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal(len(audio)).astype(np.float32)
        power = np.mean(audio ** 2) / (10 ** (float(value) / 10))
        return (audio + noise * np.sqrt(power)).astype(np.float32)
    if kind not in ("speed", "pitch", "reverb"):
        raise ValueError(f"unknown condition {condition!r} (clean, noise:SNR, speed:F, pitch:CENTS, reverb:0-100)")
    if shutil.which("sox") is None:
        raise TTSError(f"condition {condition!r} needs sox (apt-get install sox)")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        save_wav(src, audio)
        effect = [kind, value] if kind != "reverb" else ["reverb", value]
        proc = subprocess.run(["sox", str(src), str(dst), *effect, "rate", str(SAMPLE_RATE)], capture_output=True)
        if proc.returncode != 0:
            raise TTSError(f"sox {condition}: {proc.stderr.decode(errors='replace').strip()}")
        return load_audio(dst)


def write_atomic(path: Path, audio: np.ndarray) -> None:
    """Write a wav under a temporary name then rename: a killed run never leaves a half file that resume trusts."""
    buffer = io.BytesIO()
    save_wav(buffer, audio)
    atomic_write_bytes(path, buffer.getvalue())
