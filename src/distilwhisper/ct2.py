"""The CTranslate2 backend: read its Whisper models and map them onto `transformers` Whisper, and decode on the
engine itself (`CT2Decoder`, a `decoding.Decoder`) with the weight footprint of each compute type.

CTranslate2 (the engine behind faster-whisper) stores a model as one `model.bin`: a small header, a list of named
tensors and a list of aliases.  There is no public Python reader for it, so this module parses the format directly
(it is stable: binary version 6 since CTranslate2 3.x) and renames the tensors to the `transformers` Whisper state
dict.  Why that is worth doing: the only multilingual Whisper weights that install offline ship in this format.

Mapping facts (checked against CTranslate2's own output in the tests):
- self-attention q/k/v are fused row-wise into `self_attention/linear_0` as [q; k; v] (k has no bias in Whisper);
- cross-attention k/v are fused into `attention/linear_1` as [k; v]; q is `attention/linear_0`;
- layer norms are `gamma`/`beta`; `decoder/projection` is an alias of the token embedding (tied weights).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from distilwhisper.audio import SAMPLE_RATE
from distilwhisper.decoding import (DecodingOptions, Transcript, among, context_tokens, prompt_tokens,
                                    resolve_options)

SUPPORTED_BINARY_VERSIONS = (5, 6)

# CTranslate2's DataType enum (include/ctranslate2/types.h).
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype(np.float32),
    1: np.dtype(np.int8),
    2: np.dtype(np.int16),
    3: np.dtype(np.int32),
    4: np.dtype(np.float16),
    5: np.dtype(np.uint16),  # bfloat16: raw bits, converted below
}


class CT2FormatError(ValueError):
    """The file is not a readable CTranslate2 model."""


@dataclass
class CT2Model:
    """Parsed content of a CTranslate2 `model.bin`."""

    spec: str
    revision: int
    variables: dict[str, torch.Tensor]
    aliases: dict[str, str]


def _read_exact(f: BinaryIO, n: int, path: Path) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise CT2FormatError(f"{path}: file ends early (truncated or incomplete download?)")
    return data


def _read_string(f: BinaryIO, path: Path) -> str:
    (length,) = struct.unpack("<H", _read_exact(f, 2, path))
    return _read_exact(f, length, path)[:-1].decode("utf-8")


def read_model_bin(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 `model.bin` into float tensors (int8 weights are dequantised with their scales)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such CTranslate2 model file")
    variables: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    with path.open("rb") as f:
        (version,) = struct.unpack("<I", _read_exact(f, 4, path))
        if version not in SUPPORTED_BINARY_VERSIONS:
            raise CT2FormatError(f"{path}: unsupported CTranslate2 binary version {version} "
                                 f"(supported: {SUPPORTED_BINARY_VERSIONS})")
        spec = _read_string(f, path)
        (revision,) = struct.unpack("<I", _read_exact(f, 4, path))
        (count,) = struct.unpack("<I", _read_exact(f, 4, path))
        for _ in range(count):
            name = _read_string(f, path)
            (rank,) = struct.unpack("<B", _read_exact(f, 1, path))
            shape = struct.unpack(f"<{rank}I", _read_exact(f, 4 * rank, path))
            (dtype_id,) = struct.unpack("<B", _read_exact(f, 1, path))
            (nbytes,) = struct.unpack("<I", _read_exact(f, 4, path))
            if dtype_id not in _DTYPES:
                raise CT2FormatError(f"{path}: variable {name!r} has unknown data type id {dtype_id}")
            array = np.frombuffer(_read_exact(f, nbytes, path), dtype=_DTYPES[dtype_id]).reshape(shape)
            if dtype_id == 5:  # bfloat16 bits -> float32
                array = (array.astype(np.uint32) << 16).view(np.float32)
            variables[name] = torch.from_numpy(array.copy())
        (n_alias,) = struct.unpack("<I", _read_exact(f, 4, path))
        for _ in range(n_alias):
            alias = _read_string(f, path)
            aliases[alias] = _read_string(f, path)
    for name in [n for n in variables if n.endswith("/weight_scale")]:
        weight_name = name[: -len("_scale")]
        scale = variables.pop(name).float()
        weight = variables[weight_name].float()
        variables[weight_name] = weight / scale.reshape(-1, *([1] * (weight.dim() - 1)))
    return CT2Model(spec=spec, revision=revision, variables=variables, aliases=aliases)


@dataclass(frozen=True)
class WhisperDims:
    """Architecture read off the tensors (CTranslate2 keeps no config of its own for them)."""

    num_mel_bins: int
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    vocab_size: int
    max_source_positions: int
    max_target_positions: int
    encoder_attention_heads: int
    decoder_attention_heads: int


def _count_layers(names: list[str], prefix: str) -> int:
    ids = {int(m.group(1)) for n in names if (m := re.match(rf"{prefix}/layer_(\d+)/", n))}
    return max(ids) + 1 if ids else 0


def whisper_dims(model: CT2Model) -> WhisperDims:
    """Infer the Whisper architecture from tensor shapes and the stored head counts."""
    v = model.variables
    if model.spec != "WhisperSpec":
        raise CT2FormatError(f"expected a CTranslate2 WhisperSpec model, found {model.spec!r}")
    names = list(v)
    d_model = v["decoder/embeddings/weight"].shape[1]
    return WhisperDims(
        num_mel_bins=v["encoder/conv1/weight"].shape[1],
        d_model=d_model,
        encoder_layers=_count_layers(names, "encoder"),
        decoder_layers=_count_layers(names, "decoder"),
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        vocab_size=v["decoder/embeddings/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        encoder_attention_heads=int(v["encoder/num_heads"]) if "encoder/num_heads" in v else d_model // 64,
        decoder_attention_heads=int(v["decoder/num_heads"]) if "decoder/num_heads" in v else d_model // 64,
    )


def _layer_norm(sd: dict, v: dict, src: str, dst: str) -> None:
    sd[f"{dst}.weight"] = v[f"{src}/gamma"]
    sd[f"{dst}.bias"] = v[f"{src}/beta"]


def _linear(sd: dict, v: dict, src: str, dst: str, bias: bool = True) -> None:
    sd[f"{dst}.weight"] = v[f"{src}/weight"]
    if bias:
        sd[f"{dst}.bias"] = v[f"{src}/bias"]


def _fused_qkv(sd: dict, v: dict, src: str, dst: str, parts: tuple[str, ...]) -> None:
    """Split a fused projection; Whisper's k_proj has no bias (CTranslate2 stores zeros there)."""
    weights = v[f"{src}/weight"].chunk(len(parts), dim=0)
    biases = v[f"{src}/bias"].chunk(len(parts), dim=0)
    for part, w, b in zip(parts, weights, biases):
        sd[f"{dst}.{part}.weight"] = w
        if part != "k_proj":
            sd[f"{dst}.{part}.bias"] = b


def _self_attention_and_ffn(sd: dict, v: dict, src: str, dst: str) -> None:
    """The parts encoder and decoder layers share: self-attention and the feed-forward block."""
    _layer_norm(sd, v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
    _fused_qkv(sd, v, f"{src}/self_attention/linear_0", f"{dst}.self_attn", ("q_proj", "k_proj", "v_proj"))
    _linear(sd, v, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
    _layer_norm(sd, v, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
    _linear(sd, v, f"{src}/ffn/linear_0", f"{dst}.fc1")
    _linear(sd, v, f"{src}/ffn/linear_1", f"{dst}.fc2")


def to_transformers_state_dict(model: CT2Model, dims: WhisperDims) -> dict[str, torch.Tensor]:
    """Rename CTranslate2 Whisper variables to `WhisperForConditionalGeneration` keys (float32)."""
    v = model.variables
    sd: dict[str, torch.Tensor] = {}
    enc, dec = "model.encoder", "model.decoder"
    _linear(sd, v, "encoder/conv1", f"{enc}.conv1")
    _linear(sd, v, "encoder/conv2", f"{enc}.conv2")
    sd[f"{enc}.embed_positions.weight"] = v["encoder/position_encodings/encodings"]
    _layer_norm(sd, v, "encoder/layer_norm", f"{enc}.layer_norm")
    for i in range(dims.encoder_layers):
        _self_attention_and_ffn(sd, v, f"encoder/layer_{i}", f"{enc}.layers.{i}")
    sd[f"{dec}.embed_tokens.weight"] = v["decoder/embeddings/weight"]
    sd[f"{dec}.embed_positions.weight"] = v["decoder/position_encodings/encodings"]
    _layer_norm(sd, v, "decoder/layer_norm", f"{dec}.layer_norm")
    for i in range(dims.decoder_layers):
        src, dst = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        _self_attention_and_ffn(sd, v, src, dst)
        _layer_norm(sd, v, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
        _linear(sd, v, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
        _fused_qkv(sd, v, f"{src}/attention/linear_1", f"{dst}.encoder_attn", ("k_proj", "v_proj"))
        _linear(sd, v, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
    return {k: t.float().contiguous() for k, t in sd.items()}


def weight_bytes(variables: dict[str, torch.Tensor], compute_type: str) -> int:
    """Weight bytes CTranslate2 holds for a compute type, from the tensor shapes of its `model.bin`: with an int8
    type every 2-D weight matrix is int8 plus one float32 scale per row; everything else is float32."""
    total = 0
    for name, tensor in variables.items():
        if compute_type.startswith("int8") and tensor.dim() == 2 and name.endswith("weight"):
            total += tensor.numel() + 4 * tensor.shape[0]
        else:
            total += 4 * tensor.numel()
    return total


class CT2Decoder:
    """CTranslate2 decoding (plain models only) behind the `decoding.Decoder` protocol: the same log-mel features
    and forced prompts as `WhisperDecoder`, so transcripts differ only by the engine and its compute type; language
    detection, temperature sampling and the no-speech probability too, so long-form transcription runs on it."""

    def __init__(self, ct2_dir: str, processor, generation_config, compute_type: str,
                 threads: int | None = None) -> None:
        import ctranslate2

        self.ctranslate2 = ctranslate2
        self.model = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type=compute_type,
                                                intra_threads=threads or torch.get_num_threads())
        self.processor, self.generation_config = processor, generation_config
        self.timestamp_begin = int(generation_config.no_timestamps_token_id) + 1
        self.start_of_previous = int(processor.tokenizer.convert_tokens_to_ids("<|startofprev|>"))
        self.max_positions = 448  # Whisper's decoder positions (CTranslate2 keeps no config for them)

    def _features(self, audios: list[np.ndarray]):
        feats = self.processor.feature_extractor(audios, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
        return self.ctranslate2.StorageView.from_array(np.ascontiguousarray(feats))

    def language_probabilities(self, audios: list[np.ndarray]) -> list[dict[str, float]]:
        """Per clip, the probability of each language (CTranslate2's `detect_language`; English-only: en)."""
        if not self.model.is_multilingual:
            return [{"en": 1.0} for _ in audios]
        return [{token[2:-2]: prob for token, prob in pairs} for pairs in
                self.model.detect_language(self._features(audios))]

    def transcribe(self, audios: list[np.ndarray], languages: list[str | None] | str | None,
                   options: DecodingOptions | None = None, **changes) -> list[Transcript]:
        """As `WhisperDecoder.transcribe` (a language of None is detected first); with `timestamps` CTranslate2
        applies Whisper's timestamp rules itself (a prompt without <|notimestamps|>) and the tokens keep the times."""
        options = resolve_options(options, changes)
        if options.word_timestamps:
            raise ValueError("--word-timestamps needs the torch decoder's cross-attention; CTranslate2 precisions "
                             "(ct2-*) cannot give them: use fp32, bf16 or int8-dynamic")
        if isinstance(languages, str) or languages is None:
            languages = [languages] * len(audios)
        if any(lang is None for lang in languages):
            detected = [max(p, key=p.get) for p in (among(q, options.detect_languages)
                                                     for q in self.language_probabilities(audios))]
            languages = [lang or det for lang, det in zip(languages, detected)]
        context = context_tokens(self.processor.tokenizer, options, self.start_of_previous, self.max_positions)
        prompts = [context + prompt_tokens(self.generation_config, lang, options.task, options.timestamps)
                   for lang in languages]
        max_new_tokens = min(options.max_new_tokens, self.max_positions - len(prompts[0]))
        temperature = options.temperature
        sampling = dict(sampling_topk=0, sampling_temperature=temperature) if temperature > 0 else {}
        if sampling:
            self.ctranslate2.set_random_seed(options.seed)
        results = self.model.generate(self._features(audios), prompts,
                                      beam_size=1 if sampling else max(options.beam_size, 1),
                                      max_length=_max_length(len(prompts[0]), max_new_tokens), return_scores=True,
                                      return_no_speech_prob=True, suppress_blank=True, suppress_tokens=[-1], **sampling)
        tokenizer = self.processor.tokenizer
        out = []
        for r, lang in zip(results, languages):
            tokens = r.sequences_ids[0][:max_new_tokens]
            # CTranslate2's score is the log-probability divided by the length (length_penalty 1); the average
            # of `WhisperDecoder` counts the end-of-text token too
            logprob = float(r.scores[0]) * len(tokens) / (len(tokens) + 1) if r.scores else float("nan")
            out.append(Transcript(tokens=tokens, language=lang, text=tokenizer.decode(tokens, skip_special_tokens=True)
                                  .strip(), avg_logprob=logprob, no_speech_prob=float(r.no_speech_prob),
                                  temperature=temperature))
        return out


def _max_length(prompt: int, max_new_tokens: int) -> int:
    """CTranslate2's `max_length` that lets Whisper write `max_new_tokens` after a prompt of `prompt` tokens: its
    Whisper model generates at most min(max_length // 2, max_length minus the prompt) tokens (src/models/whisper.cc),
    so the prompt plus the tokens, as `WhisperDecoder` counts, would give half of them."""
    return max(2 * max_new_tokens, prompt + max_new_tokens)
