"""Precision variants of one model, each behind the same `transcribe` interface so one evaluator scores them all.

| precision | what it is | library |
|---|---|---|
| `fp32` | the reference | torch |
| `fp16`, `bf16` | all weights and activations in half precision | torch |
| `int8-dynamic` | int8 weights (one scale per output row) and int8 activations quantized on the fly, every Linear | torch (fbgemm) |
| `int8-weight`, `int4-weight` | weight-only, group-wise (`GROUP_SIZE` weights share a scale), every Linear; activations fp32 | torchao |
| `ct2-int8`, `ct2-int8_float32`, `ct2-float32` | CTranslate2's compute types (plain models only) | ctranslate2 |

Why these libraries: torch's dynamic quantization is the only int8 *compute* path that is fast on an AVX2 CPU
(fbgemm).  Weight-only group-wise int4/int8 comes from torchao's `IntxWeightOnlyConfig`, the one int4 path of torchao
that runs on CPU here (its packed int4 formats need CUDA or the `mslk` kernels, and optimum-quanto is in maintenance
mode); on CPU it stores the 4-bit values unpacked in int8 and dequantizes per matmul, so it measures int4's effect on
*accuracy*, not int4's memory saving.  The token embedding stays fp32 in every torch variant (it is a lookup, not a
matmul); the output projection, tied to it in Whisper, is quantized like any Linear.

A precision this machine or library cannot run raises `UnsupportedPrecision` with the reason, which the bias report
prints: never a silent fallback to another precision.
"""

from __future__ import annotations

import io
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from distilwhisper.clsr import ExpertsError, clsr_modules, serve_tasks, trained_languages
from distilwhisper import ct2
from distilwhisper.decoding import Decoder, WhisperDecoder
from distilwhisper.hub import resolve_ct2_dir, resolve_hf_dir
from distilwhisper.runs import attach_kept_experts, model_or_run

TORCH_PRECISIONS = ("fp32", "fp16", "bf16", "int8-dynamic", "int8-weight", "int4-weight")
CT2_PRECISIONS = ("ct2-int8", "ct2-int8_float32", "ct2-float32")
PRECISIONS = TORCH_PRECISIONS + CT2_PRECISIONS
GROUP_SIZE = 32  # weights per scale for weight-only int8/int4 (d_model of every Whisper size is a multiple of 32)


class UnsupportedPrecision(RuntimeError):
    """This precision cannot run here (hardware, missing library, or a model the backend cannot hold)."""


@dataclass
class Variant:
    """A model at one precision, ready to decode, with its weight footprint."""

    model: str
    precision: str
    decoder: Decoder
    weight_bytes: int
    parameters: int

    def info(self) -> dict:
        return {"model": self.model, "precision": self.precision, "weight_bytes": self.weight_bytes,
                "parameters": self.parameters}


def _cpuinfo(name: str) -> str:
    """The first value of a /proc/cpuinfo field ("" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == name:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


BF16_UNITS = {"avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX"}  # /proc/cpuinfo flag: the unit it names


def _cpu_flags() -> set[str]:
    return set(_cpuinfo("flags").split())


def cpu_name() -> str:
    """The CPU's model name and the instruction sets torch's kernels choose from (`AVX512, bf16 units: AMX`):
    measured runs name the machine they ran on, because training gives other weights where other kernels run
    (docs/results.md), and a virtual machine's model name ("Intel Xeon Processor") alone does not tell them apart."""
    flags = _cpu_flags()
    units = sorted(name for flag, name in BF16_UNITS.items() if flag in flags)
    return (f"{_cpuinfo('model name') or platform.processor() or 'unknown cpu'} "
            f"({torch.backends.cpu.get_cpu_capability()}, bf16 units: {' + '.join(units) or 'none'})")


def has_bf16_units(device: str = "cpu") -> bool:
    """Whether bf16 arithmetic is native here (CUDA GPUs from Ampere on; CPUs with AVX-512 BF16 or AMX), so bf16
    autocast speeds work up instead of emulating every matmul (several times slower than fp32 on AVX2-only CPUs,
    docs/results.md)."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device != "cpu" or bool(_cpu_flags() & BF16_UNITS.keys())


def auto_precision(device: str = "cpu") -> str:
    """bf16 where the hardware computes it, fp32 elsewhere, where bf16 is emulated (several times slower): what
    `transcribe --precision auto` picks for windows cut at pauses (`transcribe.resolve_precision`).  `eval` stays
    fp32: its tables must not depend on the machine."""
    return "bf16" if has_bf16_units(device) else "fp32"


def check_supported(precision: str, model: str, experts: str | None = None, device: str = "cpu") -> None:
    """Raise `UnsupportedPrecision` (with the reason) when `precision` cannot run for this model on this machine."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    flags = _cpu_flags() if device == "cpu" else {"avx512_fp16", "avx512_bf16"}  # GPUs compute in both
    if precision == "fp16" and not flags & {"avx512_fp16", "amx_fp16"}:
        raise UnsupportedPrecision("fp16: this CPU has no fp16 arithmetic (no avx512_fp16/amx_fp16); torch would "
                                   "emulate every fp16 matmul")
    if precision == "bf16" and not has_bf16_units(device):
        raise UnsupportedPrecision("bf16: this CPU has no bf16 units (no avx512_bf16/amx_bf16); emulated bf16 runs "
                                   "several times slower than fp32 (docs/results.md)")
    if precision in ("int8-weight", "int4-weight"):
        try:
            import torchao  # noqa: F401
        except ImportError as err:
            raise UnsupportedPrecision(f"{precision}: needs torchao (pip install torchao)") from err
    if precision.startswith("ct2-"):
        import ctranslate2

        compute_type = precision[4:]
        supported = ctranslate2.get_supported_compute_types("cpu")
        if compute_type not in supported:
            raise UnsupportedPrecision(f"{precision}: CTranslate2 on this CPU supports {', '.join(sorted(supported))}")
        if experts:
            raise UnsupportedPrecision(f"{precision}: CTranslate2 cannot run language experts (CLSR)")
        if resolve_ct2_dir(model) is None:
            raise UnsupportedPrecision(f"{precision}: {model} has no CTranslate2 directory (convert it with "
                                       "ct2-transformers-converter and pass that directory)")


def quantize_dynamic_int8(model: nn.Module, parts: tuple[str, ...] = ("encoder", "decoder")) -> None:
    """Replace the Linear layers of the given parts (and the output projection) by torch int8 dynamic-quantized
    ones, in place.  One scale per output row: the 51865-row output projection needs it."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    spec = {nn.Linear: per_channel_dynamic_qconfig}
    with warnings.catch_warnings():  # the eager API is deprecated in favour of torchao, whose CPU path is slower
        warnings.simplefilter("ignore")
        for part in parts:
            setattr(model.model, part, quantize_dynamic(getattr(model.model, part), spec, dtype=torch.qint8))
        model.proj_out = quantize_dynamic(nn.Sequential(model.proj_out), spec, dtype=torch.qint8)[0]


def quantize_weight_only(model: nn.Module, bits: int, group_size: int = GROUP_SIZE) -> None:
    """Group-wise symmetric weight-only quantization of every Linear layer through torchao, in place."""
    from torchao.quantization import IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    dtype = {8: torch.int8, 4: torch.int4}[bits]
    model.proj_out.weight = nn.Parameter(model.proj_out.weight.detach().clone(), requires_grad=False)  # untie
    quantize_(model, IntxWeightOnlyConfig(weight_dtype=dtype, granularity=PerGroup(group_size)),
              filter_fn=lambda module, _: isinstance(module, nn.Linear))


def state_bytes(model: nn.Module) -> int:
    """Bytes of the model's weights as stored at its precision (its serialized state dict; shared tensors once)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def load_variant(model: str, precision: str, trim: bool = False, experts: str | None = None,
                 languages: list[str] | None = None, threads: int | None = None,
                 device: str | torch.device = "cpu", expert_tasks: list[str] | None = None) -> Variant:
    """`model` at `precision` (with `experts` attached for those of `languages` they cover; the others decode on
    the shared FFNs, i.e. the original model), torch precisions only for experts.  fp32/fp16/bf16 run on `device`
    (e.g. a launch process's GPU); the int8/int4 and CTranslate2 variants measure CPU inference and stay there.
    `expert_tasks`: the tasks the experts decode (default: those they were trained for)."""
    on_cpu = precision not in ("fp32", "fp16", "bf16") or torch.device(device).type == "cpu"
    check_supported(precision, model, experts, "cpu" if on_cpu else str(device))
    if precision.startswith("ct2-"):
        from transformers import GenerationConfig, WhisperProcessor

        hf_dir, ct2_dir = resolve_hf_dir(model), resolve_ct2_dir(model)
        variables = ct2.read_model_bin(ct2_dir / "model.bin").variables
        decoder = ct2.CT2Decoder(ct2_dir, WhisperProcessor.from_pretrained(hf_dir),
                                 GenerationConfig.from_pretrained(hf_dir), precision[4:], threads)
        return Variant(model, precision, decoder, ct2.weight_bytes(variables, precision[4:]),
                       sum(t.numel() for t in variables.values()))
    whisper, processor = model_or_run(model)  # a `train` run folder: what it kept, of any method
    if experts:
        attach_kept_experts(whisper, experts, languages, missing_ok=True)
        missing = sorted(set(languages or []) - set(trained_languages(whisper)))
        if missing:
            print(f"no experts for {', '.join(missing)}: decoded with the shared FFNs (the base model)")
    if expert_tasks:  # experts from --experts or from a run folder given as the model
        if not clsr_modules(whisper):
            raise ExpertsError(f"--expert-tasks: {model} has no experts (give --experts, or a DistilWhisper or "
                               "CLSR-FT run folder as the model)")
        serve_tasks(whisper, expert_tasks)
    parameters = sum(p.numel() for p in whisper.parameters())
    if precision in ("fp32", "fp16", "bf16"):
        whisper.to(device, {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision])
    elif precision == "int8-dynamic":
        quantize_dynamic_int8(whisper)
    elif precision in ("int8-weight", "int4-weight"):
        quantize_weight_only(whisper, 8 if precision == "int8-weight" else 4)
    return Variant(model, precision, WhisperDecoder(whisper, processor, trim=trim), state_bytes(whisper), parameters)
