"""One training loop on `accelerate` for the four methods:

- `distilwhisper`: CLSR experts + gates trained with CE + gate budget + knowledge distillation from a teacher;
- `clsr-ft`: the same experts without the teacher;
- `ft`: full fine-tuning of a plain Whisper;
- `lora`: LoRA adapters (peft) on fc1/fc2 of a plain Whisper.

Defaults are the paper's (DESIGN.md): AdamW lr 1e-4, beta2 0.98, no weight decay, linear schedule with 10 %
warm-up, batch 16, 10 epochs, best checkpoint by dev WER.  Batches hold one language.  Checkpoints are written
atomically (`out/checkpoint/`); `--resume` continues from one.  The same command runs under
`accelerate launch --num_processes N` (DDP).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from distilwhisper import clsr, losses
from distilwhisper.audio import load_audio
from distilwhisper.data.manifest import Utterance, validate_manifest
from distilwhisper.decoding import prompt_tokens
from distilwhisper.hub import load_model
from distilwhisper.languages import check as check_language

METHODS = ("distilwhisper", "clsr-ft", "ft", "lora")


@dataclass
class TrainConfig:
    """Everything that defines a run (saved with its checkpoints; flags or a YAML file override defaults)."""

    method: str
    student: str
    languages: list[str]
    train: str
    out: str
    dev: str | None = None
    teacher: str | None = None
    max_steps: int | None = None
    epochs: float = 10.0
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-4
    beta2: float = 0.98
    weight_decay: float = 0.0
    warmup: float = 0.1
    label_smoothing: float = 0.1
    w_ce: float = 0.25
    w_kd: float = 0.5
    kd: str = "js"
    temperature: float = 1.0
    scope: str = "all"  # layers that train: experts (CLSR methods), adapters (lora), updated weights (ft)
    skip_probability: float = 0.2
    expert_dropout: float = 0.3
    lora_r: int = 64
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    teacher_cache: str | None = None
    top_k: int = 64
    eval_every: int = 0  # steps; 0 = at the end of each epoch
    save_every: int = 0  # steps between checkpoints besides those at dev evaluations; 0 = only at evaluations
    eval_limit: int | None = None
    bf16: bool = False
    trim: bool = False  # encode only the frames holding audio (single process; see decoding.trimmed_frames)
    cache_encoder: bool = False  # keep encoder outputs in memory (needs a frozen encoder: scope decoder)
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {', '.join(METHODS)}, not {self.method!r}")
        self.languages = [check_language(lang) for lang in self.languages]
        if self.method == "distilwhisper" and not self.teacher:
            raise ValueError("--method distilwhisper needs --teacher (use clsr-ft to train experts without one)")
        if self.method != "distilwhisper" and (self.teacher or self.teacher_cache):
            raise ValueError(f"--teacher/--teacher-cache only apply to --method distilwhisper, not {self.method}")
        if self.scope not in clsr.SCOPES:
            raise ValueError(f"--scope must be one of {', '.join(clsr.SCOPES)}, not {self.scope!r}")
        for name in ("eval_every", "save_every"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be 0 or a number of steps, not {value}")
        if self.cache_encoder and self.scope != "decoder":
            raise ValueError(f"--cache-encoder needs a frozen encoder: --scope decoder (got --scope {self.scope})")


def load_config(path: str | Path | None, overrides: dict) -> TrainConfig:
    """YAML defaults (if any) updated with the non-None command-line values."""
    values: dict = {}
    if path:
        import yaml

        values = yaml.safe_load(Path(path).read_text()) or {}
        unknown = set(values) - {f.name for f in fields(TrainConfig)}
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig(**values)
    config.check()
    return config


# ----- data ---------------------------------------------------------------------------------------------------
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
        feats = self.processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features[0]
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
    """Shuffled batches that each hold one language (CLSR selects experts per batch)."""

    def __init__(self, languages: list[str], batch_size: int, seed: int):
        self.languages, self.batch_size, self.seed, self.epoch, self.skip = languages, batch_size, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        self.epoch = epoch

    def start_at(self, epoch: int, skip: int) -> None:
        """A run resumed mid-epoch continues where it stopped: its first pass leaves out the `skip` batches of
        `epoch` it already trained on (set_epoch with the same epoch, as accelerate calls it, keeps that)."""
        self.epoch, self.skip = epoch, skip

    def _batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1000 + self.epoch)
        batches = []
        for lang in sorted(set(self.languages)):
            idx = [i for i, l in enumerate(self.languages) if l == lang]
            rng.shuffle(idx)
            batches += [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self):
        batches, self.skip = self._batches()[self.skip:], 0
        return iter(batches)

    def __len__(self) -> int:
        return len(self._batches())


# ----- teacher ------------------------------------------------------------------------------------------------
class TeacherCache:
    """Top-k teacher log-probabilities per target position, one safetensors file per utterance.

    The teacher is frozen, so its outputs on a (clip, label sequence) pair never change: computing them once saves
    the teacher's forward in every later epoch and run.  A file stores the tokens it was made for and is ignored
    when they differ (the transcript changed)."""

    def __init__(self, directory: str | Path, teacher: str, top_k: int, trim: bool = False):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "teacher.json"
        info = {"teacher": teacher, "top_k": top_k, "trim": trim}
        if meta.exists() and json.loads(meta.read_text()) != info:
            raise ValueError(f"{self.dir}: cache holds another teacher or top-k ({meta.read_text().strip()}); "
                             f"use another --teacher-cache for {info}")
        meta.write_text(json.dumps(info))
        self.top_k = top_k

    def _path(self, uid: str) -> Path:
        return self.dir / f"{uid.replace('/', '_')}.safetensors"

    def get(self, ids: list[str], dec_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        values, indices = [], []
        for row, uid in enumerate(ids):
            path = self._path(uid)
            if not path.exists():
                return None
            data = load_file(str(path))
            n = data["tokens"].shape[0]
            if not torch.equal(data["tokens"], dec_in[row, :n]):
                return None
            v = torch.zeros(dec_in.shape[1], self.top_k)
            k = torch.zeros(dec_in.shape[1], self.top_k, dtype=torch.long)
            v[:n], k[:n] = data["values"].float(), data["indices"].long()
            values.append(v)
            indices.append(k)
        return torch.stack(values), torch.stack(indices)

    def put(self, ids: list[str], dec_in: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor) -> None:
        top = torch.log_softmax(logits.float(), -1).topk(self.top_k, dim=-1)
        for row, uid in enumerate(ids):
            n = int(mask[row].sum())
            tmp = self._path(uid).with_suffix(".tmp")
            save_file({"tokens": dec_in[row, :n].contiguous(), "values": top.values[row, :n].half().contiguous(),
                       "indices": top.indices[row, :n].int().contiguous()}, str(tmp))
            tmp.replace(self._path(uid))


class EncoderCache:
    """Encoder outputs per (utterance, encoded frames), in memory.

    With experts in the decoder only, the encoder is frozen and (Whisper's dropout being 0) deterministic, so a
    clip's encoding never changes: computing it once removes the encoder -- most of a step's cost for short clips --
    from every later epoch.  Memory: frames/2 x d_model floats per clip (1.5 MB for whisper-base on a trimmed 15 s
    window), so it suits small training sets such as the demo's."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, int], torch.Tensor] = {}

    def encode(self, whisper, batch: dict, frames: int) -> torch.Tensor:
        from distilwhisper.decoding import encode

        keys = [(uid, frames) for uid in batch["ids"]]
        if all(k in self.store for k in keys):
            return torch.stack([self.store[k] for k in keys])
        with torch.no_grad():
            enc = encode(whisper, batch["input_features"], frames)
        self.store.update({k: e for k, e in zip(keys, enc)})
        return enc


# ----- model setup --------------------------------------------------------------------------------------------
def build_student(config: TrainConfig):
    """The trainable model for the method, and what gets decoded for dev WER."""
    model, processor = load_model(config.student)
    if config.method in ("distilwhisper", "clsr-ft"):
        clsr.to_distilwhisper(model, config.languages, config.scope, config.expert_dropout, config.skip_probability)
        return model, model, processor
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        sides = {"all": "(en|de)coder", "encoder": "encoder", "decoder": "decoder"}[config.scope]
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=rf".*\.{sides}\.layers\.\d+\.fc[12]")
        wrapped = get_peft_model(model, lora)
        return wrapped, wrapped.get_base_model(), processor
    prefixes = {"all": ("",), "encoder": ("model.encoder.",), "decoder": ("model.decoder.", "proj_out.")}[config.scope]
    for name, p in model.named_parameters():  # a tied proj_out is the decoder's token embedding, listed once
        p.requires_grad_(name.startswith(prefixes))
    return model, model, processor


def check_teacher(student, teacher) -> None:
    s, t = student.config, teacher.config
    if s.vocab_size != t.vocab_size:
        raise ValueError(f"teacher vocabulary ({t.vocab_size} tokens) differs from the student's ({s.vocab_size}):"
                         " distillation needs the same tokenizer")
    if s.num_mel_bins != t.num_mel_bins:
        raise ValueError(f"teacher takes {t.num_mel_bins} mel bins, the student {s.num_mel_bins} (large-v3 vs "
                         "earlier Whisper): they cannot share input features")


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


# ----- the loop -----------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """Counters of the finished run and the trained model (unwrapped from accelerate)."""

    state: dict
    model: torch.nn.Module


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train, evaluate on dev, keep the best under `out/best`; returns the final counters and the model."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from transformers import get_linear_schedule_with_warmup

    out = Path(config.out)
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum,
                              mixed_precision="bf16" if config.bf16 else "no",
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    torch.manual_seed(config.seed + accelerator.process_index)
    train_utts = select_split(validate_manifest(config.train), "train", config.train)
    outside = sorted({u.language for u in train_utts} - set(config.languages))
    if outside:
        raise ValueError(f"{config.train} holds languages outside --languages ({', '.join(outside)}); filter the "
                         "manifest or add them")
    model, decodable, processor = build_student(config)
    teacher = None
    if config.method == "distilwhisper":
        teacher, _ = load_model(config.teacher)
        check_teacher(decodable, teacher)
        teacher.requires_grad_(False).eval().to(accelerator.device)
    cache = (TeacherCache(config.teacher_cache, config.teacher, config.top_k, config.trim)
             if config.teacher_cache else None)
    if (config.trim or config.cache_encoder) and accelerator.num_processes > 1:
        raise ValueError("--trim/--cache-encoder run the encoder outside the DDP wrapper: use them with one process")
    if config.cache_encoder and getattr(decodable.config, "dropout", 0.0):
        raise ValueError(f"--cache-encoder: {config.student} has dropout {decodable.config.dropout}, so its encoder "
                         "outputs are not deterministic in training")
    encoder_cache = EncoderCache() if config.cache_encoder else None

    gen = decodable.generation_config
    eot = int(gen.eos_token_id)
    prompts = {lang: prompt_tokens(gen, lang) for lang in config.languages}
    dataset = SpeechDataset(train_utts, processor, prompts, eot)
    sampler = LanguageBatches([u.language for u in train_utts], config.batch_size, config.seed)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=lambda items: collate(items, eot))
    steps_per_epoch = math.ceil(len(sampler) / accelerator.num_processes / config.grad_accum)
    total_steps = config.max_steps or max(1, int(config.epochs * steps_per_epoch))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, config.beta2), weight_decay=config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup * total_steps), total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    state = {"method": config.method, "step": 0, "epoch": 0, "epoch_batches": 0, "seconds": 0.0,
             "best_dev_wer": None, "best_step": None}
    ckpt = out / "checkpoint"
    rng = None  # random-number states of a mid-epoch checkpoint, restored once the loader has started (below)
    if resume:
        saved, rng = _load_checkpoint(ckpt, config, accelerator.unwrap_model(model), optimizer, scheduler)
        state = {**state, **saved}
        if state["epoch_batches"] * accelerator.num_processes >= len(sampler):  # saved on an epoch's last batch
            state["epoch"], state["epoch_batches"] = state["epoch"] + 1, 0
        if state["epoch_batches"] == 0:  # the next epoch's loader has not drawn its seed yet: restore before it
            _set_rng(rng)
            rng = None
        sampler.start_at(state["epoch"], state["epoch_batches"] * accelerator.num_processes)
        if accelerator.is_main_process:
            _drop_logged_after(out / "metrics.jsonl", state["step"])
    elif accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(config), indent=1))
    writer = _tensorboard(out) if accelerator.is_main_process else None
    unwrapped = accelerator.unwrap_model(model)
    bar = tqdm(total=total_steps, initial=state["step"], desc=config.method, unit="step",
               disable=not (progress and accelerator.is_main_process))
    metrics_log = (out / "metrics.jsonl").open("a") if accelerator.is_main_process else None
    started = time.perf_counter() - state["seconds"]  # training wall time adds up over resumed runs
    if not resume and config.dev:
        # the starting model is a candidate too: a run that never beats it on dev keeps it (and says so)
        _evaluate_and_keep(config, accelerator, unwrapped, decodable, processor, state, writer)
    model.train()  # load_model hands out eval-mode models; the dev evaluations switch back and forth
    finished_before = done = state["step"] >= total_steps
    while not done:
        sampler.set_epoch(state["epoch"])
        loader.set_epoch(state["epoch"])  # accelerate counts epochs from 0 itself and passes its count on
        for batch in loader:
            if rng is not None:  # the loader draws its seed from the global RNG at the start of an epoch, which the
                _set_rng(rng)    # interrupted run had done before its checkpoint: restore after that draw
                rng = None
            state["epoch_batches"] += 1
            with accelerator.accumulate(model):
                terms = _step(config, model, unwrapped, teacher, cache, batch, state["step"], total_steps,
                              encoder_cache)
                accelerator.backward(terms["loss"])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            logged = {k: float(v.detach()) for k, v in terms.items()}
            bar.set_postfix({k: f"{v:.3f}" for k, v in logged.items()})
            bar.update(1)
            if accelerator.is_main_process:
                for k, v in logged.items():
                    writer.add_scalar(f"train/{k}", v, state["step"])
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], state["step"])
                metrics_log.write(json.dumps({"step": state["step"], **logged}) + "\n")
                metrics_log.flush()
            evaluate_now = bool(config.eval_every) and state["step"] % config.eval_every == 0
            if evaluate_now:
                _evaluate_and_keep(config, accelerator, unwrapped, decodable, processor, state, writer)
            if evaluate_now or (config.save_every and state["step"] % config.save_every == 0):
                _save_checkpoint(accelerator, ckpt, unwrapped, optimizer, scheduler, state, started)
            if state["step"] >= total_steps:
                done = True
                break
        else:
            state["epoch"] += 1
            state["epoch_batches"] = 0
            if not config.eval_every:
                _evaluate_and_keep(config, accelerator, unwrapped, decodable, processor, state, writer)
                _save_checkpoint(accelerator, ckpt, unwrapped, optimizer, scheduler, state, started)
    bar.close()
    if state.get("evaluated_step") != state["step"]:
        _evaluate_and_keep(config, accelerator, unwrapped, decodable, processor, state, writer)
    if not finished_before:  # a finished run that is only reused (e.g. by the demo) is not written again
        _save_checkpoint(accelerator, ckpt, unwrapped, optimizer, scheduler, state, started)
    if accelerator.is_main_process:
        writer.close()
        metrics_log.close()
    accelerator.wait_for_everyone()
    return TrainResult(state, unwrapped)


def _drop_logged_after(path: Path, step: int) -> None:
    """Steps trained after the checkpoint were lost with the interruption: their metric rows go too (they are
    logged again when the resumed run repeats them), and so does a row torn by the interruption."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.endswith("\n") and json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(kept))
        tmp.replace(path)


def load_trained(out: str | Path):
    """(model, processor, config) of what a `train` run kept under `out/best`, ready to decode: the student with its
    experts (distilwhisper, clsr-ft), with its LoRA adapters merged (lora), or the fine-tuned model (ft)."""
    out = Path(out)
    if not (out / "config.json").is_file() or not (out / "best").is_dir():
        raise ValueError(f"{out}: not a finished training run (needs config.json and best/)")
    config = json.loads((out / "config.json").read_text())
    method, best = config["method"], out / "best"
    if method == "ft":
        model, processor = load_model(str(best))
        return model, processor, config
    model, processor = load_model(config["student"])
    if method == "lora":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(best)).merge_and_unload()
    else:
        clsr.attach_experts(model, best, config["languages"])
    return model.eval(), processor, config


def _tensorboard(out: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tensorboard"))


def _step(config: TrainConfig, model, unwrapped, teacher, cache, batch, step: int, total: int,
          encoder_cache: EncoderCache | None = None) -> dict:
    clsr.set_language(unwrapped, batch["language"])
    clsr.set_noise_scale(unwrapped, 5.0 * min(step / total, 1.0))
    logits = _forward(config, model, unwrapped, batch, encoder_cache)
    labels, mask = batch["labels"], (batch["labels"] != losses.IGNORE).float()
    ce = losses.cross_entropy(logits, labels, config.label_smoothing)
    modules = clsr.clsr_modules(unwrapped)
    routed = [m for m in modules if m.last_gate is not None]
    gate_masks = [batch["decoder_mask"] if m.side == "decoder" else None for m in routed]
    gate = losses.gate_budget([m.last_gate for m in routed], gate_masks) if modules else torch.zeros(())
    kd = None
    if teacher is not None:
        kd = _kd(config, teacher, cache, batch, logits, mask, encoder_cache)
    terms = {"loss": losses.total_loss(ce, gate, kd, config.w_ce, config.w_kd), "ce": ce.detach()}
    if modules:
        terms["gate"] = gate.detach()
        terms["g_mean"] = torch.stack([m.last_gate.mean() for m in routed]).mean() if routed else torch.zeros(())
    if kd is not None:
        terms["kd"] = kd.detach()
    return terms


def _forward(config: TrainConfig, model, unwrapped, batch, encoder_cache: EncoderCache | None = None) -> torch.Tensor:
    """Logits for the batch; with `trim` the encoder sees only the frames holding audio (padding-free); with an
    encoder cache the frozen encoder runs once per clip."""
    if not config.trim and encoder_cache is None:
        return model(input_features=batch["input_features"], decoder_input_ids=batch["decoder_input_ids"]).logits
    from distilwhisper.decoding import encode, trimmed_frames

    whisper = unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped
    frames = trimmed_frames(batch["num_samples"]) if config.trim else batch["input_features"].shape[-1]
    if encoder_cache is not None:
        enc = encoder_cache.encode(whisper, batch, frames)
    else:
        enc = encode(whisper, batch["input_features"], frames)
    return model(encoder_outputs=(enc,), decoder_input_ids=batch["decoder_input_ids"]).logits


def _kd(config: TrainConfig, teacher, cache, batch, logits, mask,
        encoder_cache: EncoderCache | None = None) -> torch.Tensor:
    cached = cache.get(batch["ids"], batch["decoder_input_ids"]) if cache else None
    if cached is None:
        # a teacher that is the student's own frozen model has the same encoder: reuse the cached encodings
        same_encoder = encoder_cache if config.teacher == config.student else None
        with torch.no_grad():
            t_logits = _forward(config, teacher, teacher, batch, same_encoder)
        if cache is None:
            return losses.kd_loss_logits(logits, t_logits, mask, config.kd, config.temperature)
        cache.put(batch["ids"], batch["decoder_input_ids"], batch["decoder_mask"], t_logits)
        cached = cache.get(batch["ids"], batch["decoder_input_ids"])
    values, indices = cached
    return losses.kd_loss_topk(logits, values.to(logits.device), indices.to(logits.device), mask, config.kd,
                               config.temperature)


def _evaluate_and_keep(config, accelerator, unwrapped, decodable, processor, state, writer) -> None:
    """Dev WER with the hard gates; the best model so far is kept under out/best (experts, adapter or model)."""
    state["evaluated_step"] = state["step"]
    if not config.dev or not accelerator.is_main_process:
        if accelerator.is_main_process:
            _save_best(config, unwrapped, decodable, processor)
        accelerator.wait_for_everyone()
        return
    from distilwhisper.decoding import WhisperDecoder
    from distilwhisper.evaluate import evaluate

    unwrapped.eval()
    clsr.expert_fraction(unwrapped)  # reset the routing counters
    out = Path(config.out) / "dev" / f"step-{state['step']:07d}"
    shutil.rmtree(out, ignore_errors=True)
    dev_split = "dev" if any(u.split for u in validate_manifest(config.dev, check_audio=False)) else None
    summary = evaluate(f"{config.student}+{config.method}@{state['step']}", config.dev, out,
                       batch_size=config.batch_size, limit=config.eval_limit, split=dev_split,
                       decoder=WhisperDecoder(decodable, processor), progress=False)
    unwrapped.train()
    wer = summary["overall"]["wer"]["value"]
    writer.add_scalar("dev/wer", wer, state["step"])
    routed = clsr.expert_fraction(unwrapped)
    if routed is not None:
        writer.add_scalar("dev/expert_fraction", routed, state["step"])
        state.setdefault("dev_expert_fraction", {})[str(state["step"])] = routed
    tqdm.write(f"step {state['step']}: dev WER {wer:.2f}"
               + (f", {100 * routed:.0f} % of tokens routed to experts" if routed is not None else ""))
    if state["best_dev_wer"] is None or wer < state["best_dev_wer"]:
        state["best_dev_wer"], state["best_step"] = wer, state["step"]
        _save_best(config, unwrapped, decodable, processor)
    accelerator.wait_for_everyone()


def _save_best(config, unwrapped, decodable, processor) -> None:
    best = Path(config.out) / "best"
    tmp = Path(config.out) / ".best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if config.method in ("distilwhisper", "clsr-ft"):
        clsr.save_experts(decodable, tmp, config.student, config.languages, {"method": config.method})
    elif config.method == "lora":
        unwrapped.save_pretrained(tmp)
        (tmp / "base_model.txt").write_text(config.student + "\n")
    else:
        decodable.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    shutil.rmtree(best, ignore_errors=True)
    tmp.rename(best)


def _save_checkpoint(accelerator, ckpt: Path, unwrapped, optimizer, scheduler, state: dict, started: float) -> None:
    """Trainable weights, optimiser, schedule and counters (with the training seconds since `started`), written to a
    temp dir and renamed into place."""
    state["seconds"] = round(time.perf_counter() - started, 1)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    tmp = ckpt.with_name(".checkpoint.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(unwrapped), str(tmp / "trainable.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
               tmp / "optim.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    old = ckpt.with_name(".checkpoint.old")
    shutil.rmtree(old, ignore_errors=True)
    if ckpt.exists():
        ckpt.rename(old)
    tmp.rename(ckpt)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(ckpt: Path, config: TrainConfig, unwrapped, optimizer, scheduler) -> tuple[dict, dict]:
    """Load a checkpoint's weights, optimiser and schedule; returns its counters and random-number states."""
    if not (ckpt / "state.json").exists():
        raise ValueError(f"--resume: no checkpoint under {ckpt}")
    state = json.loads((ckpt / "state.json").read_text())
    if state["method"] != config.method:
        raise ValueError(f"--resume: {ckpt} is a checkpoint of --method {state['method']}, not {config.method}")
    weights = load_file(str(ckpt / "trainable.safetensors"))
    missing = set(trainable_state(unwrapped)) - set(weights)
    if missing:
        raise ValueError(f"--resume: {ckpt} lacks {len(missing)} trainable tensors of this model "
                         f"(e.g. {sorted(missing)[0]}); was it made with other languages or scope?")
    unwrapped.load_state_dict(weights, strict=False)
    extra = torch.load(ckpt / "optim.pt", weights_only=False)
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    return state, extra


def _set_rng(saved: dict) -> None:
    torch.set_rng_state(saved["rng"])
    if saved.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
