"""Conditional Language-Specific Routing (CLSR): per-language experts beside Whisper's frozen feed-forward blocks.

Every FFN (`fc1 -> GELU -> fc2`) of the chosen layers becomes

    y = g * FFN_lang(x) + (1 - g) * FFN_shared(x),      g = gate_lang(x) per token,

with `FFN_shared` the pretrained block (frozen), `FFN_lang` a trainable copy of it, and the gate
`G(x) = W2 ReLU(W1 Dropout(x) + b1)` (W1: d->64, normal std 0.01; W2: 64->1, zero init, no bias).
Training uses a noisy soft gate `sigmoid(G + alpha * eps)` and skips the whole layer's routing (shared FFN only) with
probability 0.2; inference uses the hard gate `1[G >= 0]` and computes, per token, only the chosen FFN.

The module takes the place of the layer's `fc1`; the layer's `activation_fn` and `fc2` become identities, so the
`transformers` layer code (attention, caches, residuals) runs unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from distilwhisper.io import atomic_write_bytes, atomic_write_json
from distilwhisper.languages import check as check_language

GATE_HIDDEN = 64
SHARED = "<shared>"  # set_language value for a language without experts: every block uses the shared FFN
EXPERTS_CONFIG = "distilwhisper_experts.json"
SCOPES = ("all", "encoder", "decoder")
TASKS = ("transcribe", "translate")  # Whisper's two tasks (decoding.TASKS is this)
TRAINED_FOR = ("transcribe",)  # the task experts learn; translate only with train --keep-translate


class ExpertsError(ValueError):
    """Experts that do not fit the model or the request; the message says why."""


class Gate(nn.Module):
    """Token-level gate of one language in one layer."""

    def __init__(self, d_model: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.w1 = nn.Linear(d_model, GATE_HIDDEN)
        self.w2 = nn.Linear(GATE_HIDDEN, 1, bias=False)
        nn.init.normal_(self.w1.weight, std=0.01)
        nn.init.zeros_(self.w1.bias)
        nn.init.zeros_(self.w2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(torch.relu(self.w1(self.dropout(x)))).squeeze(-1)


class FeedForward(nn.Module):
    """fc1 -> activation -> fc2 (an expert, or the wrapped pretrained block)."""

    def __init__(self, fc1: nn.Linear, fc2: nn.Linear, activation: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1, self.fc2, self.activation = fc1, fc2, activation
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.activation(self.fc1(x))))


class CLSRFeedForward(nn.Module):
    """The CLSR block of one layer: shared FFN, one expert and one gate per language."""

    def __init__(self, fc1: nn.Linear, fc2: nn.Linear, activation: nn.Module, languages: list[str],
                 expert_dropout: float = 0.3, skip_probability: float = 0.2) -> None:
        super().__init__()
        self.shared = FeedForward(fc1, fc2, activation)
        self.experts = nn.ModuleDict()
        self.gates = nn.ModuleDict()
        self.expert_dropout = expert_dropout
        self.skip_probability = skip_probability
        self.language: str | None = None
        self.side = ""  # "encoder" or "decoder": decoder gates are averaged over real tokens only
        self.noise_scale = 0.0  # alpha, set by the trainer's schedule
        self.last_gate: torch.Tensor | None = None  # soft gate values of the last training forward (budget loss)
        self.routed: dict[str, list[int]] = {}  # language -> [tokens sent to its expert, tokens seen] at inference
        for lang in languages:
            self.add_language(lang)

    def add_language(self, language: str) -> None:
        shared = self.shared
        self.experts[language] = FeedForward(copy.deepcopy(shared.fc1), copy.deepcopy(shared.fc2),
                                             shared.activation, self.expert_dropout)
        self.gates[language] = Gate(shared.fc1.in_features).to(shared.fc1.weight.device, shared.fc1.weight.dtype)
        for p in self.experts[language].parameters():
            p.requires_grad_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last_gate = None
        if self.language is None:
            raise ExpertsError("no language selected: call distilwhisper.clsr.set_language(model, code) first")
        if self.language == SHARED:
            return self.shared(x)
        if self.language not in self.experts:
            raise ExpertsError(f"no experts for language {self.language!r}; trained: {', '.join(self.experts)}")
        expert, gate = self.experts[self.language], self.gates[self.language]
        if self.training:
            if torch.rand(()) < self.skip_probability:  # gate skipping: this layer uses the shared FFN only
                return self.shared(x)
            logits = gate(x)
            g = torch.sigmoid(logits + self.noise_scale * torch.randn_like(logits))
            self.last_gate = g
            return g.unsqueeze(-1) * expert(x) + (1 - g).unsqueeze(-1) * self.shared(x)
        return self._route(x, gate(x) >= 0, expert)

    def _route(self, x: torch.Tensor, to_expert: torch.Tensor, expert: nn.Module) -> torch.Tensor:
        """Hard routing: each FFN runs once, on its own tokens only."""
        counts = self.routed.setdefault(self.language, [0, 0])
        counts[0] += int(to_expert.sum())
        counts[1] += to_expert.numel()
        if bool(to_expert.all()):
            return expert(x)
        if not bool(to_expert.any()):
            return self.shared(x)
        flat, mask = x.reshape(-1, x.shape[-1]), to_expert.reshape(-1)
        out = torch.empty_like(flat)
        out[mask] = expert(flat[mask])
        out[~mask] = self.shared(flat[~mask])
        return out.view_as(x)


def clsr_modules(model: nn.Module) -> list[CLSRFeedForward]:
    return [m for m in model.modules() if isinstance(m, CLSRFeedForward)]


def _layers(model: nn.Module, scope: str) -> list[tuple[str, nn.Module]]:
    if scope not in SCOPES:
        raise ExpertsError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    whisper = model.model
    layers = []
    if scope in ("all", "encoder"):
        layers += [("encoder", layer) for layer in whisper.encoder.layers]
    if scope in ("all", "decoder"):
        layers += [("decoder", layer) for layer in whisper.decoder.layers]
    return layers


def to_distilwhisper(model: nn.Module, languages: list[str], scope: str = "all",
                     expert_dropout: float = 0.3, skip_probability: float = 0.2) -> nn.Module:
    """Turn a `transformers` Whisper model into a DistilWhisper model in place: CLSR blocks in the `scope` layers,
    every original parameter frozen, experts and gates trainable."""
    languages = [check_language(lang) for lang in languages]
    if clsr_modules(model):
        raise ExpertsError("model already has CLSR blocks")
    for p in model.parameters():
        p.requires_grad_(False)
    for side, layer in _layers(model, scope):
        block = CLSRFeedForward(layer.fc1, layer.fc2, layer.activation_fn, languages, expert_dropout,
                                skip_probability)
        block.side = side
        layer.fc1, layer.fc2, layer.activation_fn = block, nn.Identity(), nn.Identity()
    model.distilwhisper_scope = scope
    return model


def routed_shares(model: nn.Module, language: str) -> list[float]:
    """Per CLSR block (in model order), the share of tokens its hard gate sent to `language`'s experts in the
    inference forwards since the last `routing_counts` reset: the gate's mean, which `merge_experts` stands in for
    the gate."""
    shares = []
    for i, m in enumerate(clsr_modules(model)):
        routed, seen = m.routed.get(language, (0, 0))
        if not seen:
            raise ExpertsError(f"CLSR block {i} saw no {language!r} tokens: decode {language} speech with the "
                               "experts before measuring their shares")
        shares.append(routed / seen)
    return shares


def merge_experts(model: nn.Module, language: str, shares: list[float]) -> nn.Module:
    """A plain Whisper model, in place, that holds `language`'s experts without gates: what a format without
    per-token gates (CTranslate2, a transformers folder) can hold of a DistilWhisper model.

    Each block's gate is replaced by a constant, its share of tokens routed to the expert (`routed_shares`, measured
    on the language's speech), and the block becomes `share * FFN_lang(x) + (1 - share) * FFN_shared(x)`, one FFN of
    twice the width: fc1 stacks both FFNs' fc1, fc2 sets their fc2 side by side, each scaled by its weight.  Exact
    for a constant gate; an approximation of the token gate.  The gate forced open (every token through the expert)
    is no approximation at all: experts trained beside a gate loop without it (docs/results.md, "Exported runs")."""
    blocks = clsr_modules(model)
    if len(shares) != len(blocks):
        raise ExpertsError(f"{len(shares)} shares for {len(blocks)} CLSR blocks")
    if not blocks:
        raise ExpertsError("the model has no experts to merge")
    if language not in blocks[0].experts:
        raise ExpertsError(f"no experts for language {language!r}; trained: {', '.join(blocks[0].experts)}")
    whisper, sides = model.model, set()
    share_of = dict(zip(map(id, blocks), shares))
    for side, layers in (("encoder", whisper.encoder.layers), ("decoder", whisper.decoder.layers)):
        for layer in layers:
            block = layer.fc1
            if isinstance(block, CLSRFeedForward):
                layer.fc1, layer.fc2, layer.activation_fn = _stacked(block.shared, block.experts[language],
                                                                     share_of[id(block)])
                sides.add(side)
    for side in sides:  # every layer of a side in scope has a block, so the side's width is uniform
        name = f"{side}_ffn_dim"
        setattr(model.config, name, 2 * getattr(model.config, name))
    for name in ("distilwhisper_scope", "distilwhisper_tasks"):
        if hasattr(model, name):
            delattr(model, name)
    return model


def _stacked(shared: FeedForward, expert: FeedForward, share: float) -> tuple[nn.Linear, nn.Linear, nn.Module]:
    """(fc1, fc2, activation) of `share * expert(x) + (1 - share) * shared(x)` as one FFN of twice the width."""
    d, width = shared.fc1.in_features, shared.fc1.out_features
    ref = shared.fc1.weight
    fc1 = nn.Linear(d, 2 * width).to(ref.device, ref.dtype)
    fc2 = nn.Linear(2 * width, d).to(ref.device, ref.dtype)
    with torch.no_grad():
        fc1.weight.copy_(torch.cat([shared.fc1.weight, expert.fc1.weight]))
        fc1.bias.copy_(torch.cat([shared.fc1.bias, expert.fc1.bias]))
        fc2.weight.copy_(torch.cat([(1 - share) * shared.fc2.weight, share * expert.fc2.weight], dim=1))
        fc2.bias.copy_((1 - share) * shared.fc2.bias + share * expert.fc2.bias)
    return fc1, fc2, shared.activation


def set_language(model: nn.Module, language: str, shared_fallback: bool = False, task: str = "transcribe") -> None:
    """Select the experts every CLSR block uses (a batch holds one language); a no-op for plain models.  A language
    without experts is an error, or with `shared_fallback` runs on the shared FFNs: the frozen original model, which
    is how a DistilWhisper model serves the languages it has no experts for, and the tasks its experts do not serve
    (`served_tasks`): experts trained on transcription alone route translate-task tokens as if they were
    transcribing and lose the task (docs/results.md, "The translate task"), so it stays the base model's."""
    modules = clsr_modules(model)
    if modules and task not in served_tasks(model):
        language = SHARED
    if modules and language not in (*modules[0].experts, SHARED):
        if not shared_fallback:
            raise ExpertsError(f"no experts for language {language!r}; trained: {', '.join(modules[0].experts)}")
        language = SHARED
    for m in modules:
        m.language = language


def served_tasks(model: nn.Module) -> tuple[str, ...]:
    """The tasks a model's experts decode (the others run on the shared FFNs): what they were trained for, as saved
    with them, unless `serve_tasks` said otherwise."""
    return getattr(model, "distilwhisper_tasks", TRAINED_FOR)


def unknown_tasks(tasks: list[str] | tuple[str, ...]) -> list[str]:
    """The names in `tasks` that are not Whisper tasks (what `serve_tasks` and `eval --expert-tasks` refuse)."""
    return [t for t in tasks if t not in TASKS]


def serve_tasks(model: nn.Module, tasks: list[str] | tuple[str, ...]) -> None:
    """Let the experts decode `tasks` (e.g. to measure what experts trained on transcription do to translation)."""
    unknown = unknown_tasks(tasks)
    if unknown or not tasks:
        raise ExpertsError(f"tasks must be some of {', '.join(TASKS)}, not {', '.join(unknown) or 'none'}")
    model.distilwhisper_tasks = tuple(tasks)


def set_noise_scale(model: nn.Module, alpha: float) -> None:
    for m in clsr_modules(model):
        m.noise_scale = alpha


def routing_counts(model: nn.Module, reset: bool = True) -> dict[str, tuple[int, int]]:
    """Per language, (tokens the hard gates sent to experts, tokens seen) in inference forwards since the last
    reset: the check that trained experts are used at all (gates that learned to avoid them leave the base model);
    counts, so that the processes of a launch can add theirs up, and per language, because each language's experts
    may be kept from another training step."""
    totals: dict[str, tuple[int, int]] = {}
    for m in clsr_modules(model):
        for lang, (routed, seen) in m.routed.items():
            r, s = totals.get(lang, (0, 0))
            totals[lang] = (r + routed, s + seen)
        if reset:
            m.routed = {}
    return totals


def trained_languages(model: nn.Module) -> list[str]:
    modules = clsr_modules(model)
    return list(modules[0].experts) if modules else []


def _fingerprint(model: nn.Module) -> str:
    """Identifies the frozen base weights, so experts are never loaded onto another model."""
    digest = hashlib.sha256()
    for module in clsr_modules(model)[:2]:
        digest.update(module.shared.fc1.weight.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _language_state(model: nn.Module, language: str) -> dict[str, torch.Tensor]:
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, CLSRFeedForward):
            for key, value in module.experts[language].state_dict().items():
                state[f"{name}.experts.{language}.{key}"] = value.detach().contiguous()
            for key, value in module.gates[language].state_dict().items():
                state[f"{name}.gates.{language}.{key}"] = value.detach().contiguous()
    return state


def save_experts(model: nn.Module, directory: str | Path, base_model: str, languages: list[str] | None = None,
                 extra: dict | None = None) -> Path:
    """One safetensors file per language (experts + gates only) and a JSON config naming the base model."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    languages = languages or trained_languages(model)
    for lang in languages:
        atomic_write_bytes(directory / f"{lang}.safetensors", save(_language_state(model, lang),
                                                                    metadata={"language": lang}))
    config = model.config
    info = {"base_model": base_model, "languages": sorted(set(languages) | set(_saved_languages(directory))),
            "scope": getattr(model, "distilwhisper_scope", "all"), "fingerprint": _fingerprint(model),
            "d_model": config.d_model, "encoder_layers": config.encoder_layers,
            "decoder_layers": config.decoder_layers, "vocab_size": config.vocab_size, **(extra or {})}
    atomic_write_json(directory / EXPERTS_CONFIG, info)
    return directory


def _saved_languages(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.safetensors"))


def read_experts_config(directory: str | Path) -> dict:
    path = Path(directory) / EXPERTS_CONFIG
    if not path.is_file():
        raise ExpertsError(f"{directory}: not an experts directory (no {EXPERTS_CONFIG})")
    return json.loads(path.read_text())


def attach_experts(model: nn.Module, directory: str | Path, languages: list[str] | None = None,
                   missing_ok: bool = False, unsaved_tasks: tuple[str, ...] = TRAINED_FOR) -> nn.Module:
    """Add saved experts to a plain Whisper model (converted in place); checks they belong to this model.  With
    `missing_ok`, requested languages without experts are left out (decoding runs them on the shared FFNs).
    `unsaved_tasks`: what experts serve whose folder saved no tasks (runs of bc74f00..96c5aa5: their run's settings
    say what they learnt; a bare folder of that time, transcription)."""
    directory = Path(directory)
    info = read_experts_config(directory)
    languages = languages or info["languages"]
    missing = [lang for lang in languages if not (directory / f"{lang}.safetensors").is_file()]
    if missing and missing_ok:
        languages = [lang for lang in languages if lang not in missing] or info["languages"]
    elif missing:
        raise ExpertsError(f"{directory}: no experts for {', '.join(missing)}; trained: "
                           f"{', '.join(_saved_languages(directory)) or 'none'}")
    config = model.config
    for key in ("d_model", "encoder_layers", "decoder_layers", "vocab_size"):
        if info.get(key) != getattr(config, key):
            raise ExpertsError(f"{directory}: experts were trained for a model with {key}={info.get(key)}, "
                               f"this model has {getattr(config, key)} (base model of the experts: "
                               f"{info['base_model']})")
    to_distilwhisper(model, languages, info.get("scope", "all"))
    serve_tasks(model, info.get("tasks", unsaved_tasks))
    if _fingerprint(model) != info["fingerprint"]:
        raise ExpertsError(f"{directory}: experts were trained on other base weights ({info['base_model']}); "
                           "load them with that model")
    for lang in languages:
        path = directory / f"{lang}.safetensors"
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise ExpertsError(f"{path}: corrupt or truncated expert file ({err})") from err
        expected = _language_state(model, lang)
        if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
            raise ExpertsError(f"{path}: tensors do not match this model's CLSR blocks")
        unexpected = model.load_state_dict(state, strict=False).unexpected_keys
        if unexpected:
            raise ExpertsError(f"{path}: tensors {unexpected[:3]} have no place in this model")
    model.eval()
    return model

