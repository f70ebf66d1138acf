"""One training loop on `accelerate` for the four methods.

The loop trains, evaluates on dev (the untrained start is a candidate too), keeps the best model under `best/` and
checkpoints at every dev evaluation and every `save_every` steps.  A resumed run restores the checkpoint with
accelerate's `load_state` and continues mid-epoch with `skip_first_batches`, ending with the weights of a run that
was never interrupted.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from distilwhisper import clsr
from distilwhisper.data.manifest import TRANSLATION_REFERENCE, validate_manifest
from distilwhisper.decoding import WhisperDecoder, prompt_tokens
from distilwhisper.distributed import exclusive_on_main, gather
from distilwhisper.evaluate import evaluate, select
from distilwhisper.io import append_jsonl, atomic_write_json, recover_dir, repair_jsonl, rewrite_jsonl
from distilwhisper.results import by_language, rate
from distilwhisper.results import counts as result_counts
from distilwhisper.train.caches import EncoderCache, TeacherCache
from distilwhisper.train.checkpoint import load_checkpoint, register_weight_hooks, save_best, save_checkpoint
from distilwhisper.train.config import TrainConfig
from distilwhisper.train.data import LanguageBatches, SpeechDataset, collate, select_split
from distilwhisper.train.model import build_student, load_teacher, same_encoder, weights_fingerprint, whisper_of
from distilwhisper.train.objective import Objective
from distilwhisper.train.run import RunLayout, State


@dataclass
class TrainResult:
    """Counters of the finished run and the trained model (unwrapped from accelerate)."""

    state: State
    model: torch.nn.Module


def train(config: TrainConfig, resume: bool = False, progress: bool = True,
          encodings: EncoderCache | None = None) -> TrainResult:
    """Train, evaluate on dev, keep the best under `out/best`; returns the final counters and the model.  One run
    at a time per folder (the main process holds it).  `encodings`: an encoder cache shared with earlier runs of
    this process (used with `cache_encoder`; it keeps only what matches this run's encoder, precision and data)."""
    with deterministic_algorithms():
        trainer = Trainer(config.check(), progress, encodings)
        with exclusive_on_main(config.out, trainer.accelerator.state):
            return trainer.run(resume)


@contextmanager
def deterministic_algorithms():
    """Run with torch's deterministic algorithms, restoring the caller's setting after.

    Why: with two or more threads, the backward of Whisper's learned positional embedding (`weight[position_ids]`,
    an accumulating `index_put_`) adds a batch's position gradients in an order that changes from run to run, so two
    runs of the same settings on the same machine drifted apart (benchmarks/train_determinism.py, docs/results.md);
    the deterministic kernel fixes the order at no measured cost.  `warn_only`: an operation without a
    deterministic kernel (some CUDA ones) warns instead of stopping a run.  CUDA's cuBLAS needs its workspace
    setting before it starts; one already started keeps its own."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


class Trainer:
    """The run's models, data, optimizer and counters, so that each part of the loop is a short method."""

    def __init__(self, config: TrainConfig, progress: bool, encodings: EncoderCache | None = None) -> None:
        from accelerate import Accelerator, DistributedDataParallelKwargs, InitProcessGroupKwargs
        from transformers import get_linear_schedule_with_warmup

        self.config, self.progress, self.layout = config, progress, RunLayout(config.out)
        # bf16 is autocast around each step's loss (_train_step), not accelerate's mixed_precision: that is fixed
        # for the life of a process, so one that trained in fp32 could not train a bf16 run after it
        self.accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum,
                                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True),
                                                        InitProcessGroupKwargs(timeout=timedelta(
                                                            minutes=config.timeout_minutes))])
        torch.manual_seed(config.seed + self.accelerator.process_index)
        if self.accelerator.num_processes > 1:
            tqdm.write(f"{self.accelerator.distributed_type.value}: process {self.accelerator.process_index} of "
                       f"{self.accelerator.num_processes}")
        self._check_inputs()
        model, self.decodable, self.processor = build_student(config)
        teacher = load_teacher(config, self.decodable, self.accelerator.device) if config.teacher else None
        loader = self._loader()
        self.total_steps = config.max_steps or max(1, int(config.epochs * math.ceil(
            len(self.sampler) / self.accelerator.num_processes / config.grad_accum)))
        params = [p for p in model.parameters() if p.requires_grad]
        # the fused kernel: one pass over each tensor instead of a dozen; FT's 52 M parameters stepped in 0.04 s
        # instead of 0.16 s here (2 threads), a tenth of its training step
        optimizer = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, config.beta2),
                                      weight_decay=config.weight_decay,
                                      fused=self.accelerator.device.type in ("cpu", "cuda"))
        # accelerate's scheduler wrapper steps the schedule num_processes times per optimizer step (it assumes a
        # schedule counted in one process's batches); counted in those units, warm-up and decay follow global
        # optimizer steps at any number of processes, as at one
        n = self.accelerator.num_processes
        scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup * self.total_steps) * n,
                                                    self.total_steps * n)
        self.model, self.optimizer, self.loader, self.scheduler = self.accelerator.prepare(
            model, optimizer, loader, scheduler)
        self.unwrapped = self.accelerator.unwrap_model(self.model)
        register_weight_hooks(self.accelerator, config)
        self.objective = Objective(
            config, self.model, self.unwrapped, teacher,
            TeacherCache(config.teacher_cache, weights_fingerprint(teacher), config.top_k, config.trim,
                         config.teacher) if config.teacher_cache else None,
            self._encoder_cache(encodings) if config.cache_encoder else None,
            teacher is not None and config.cache_encoder and same_encoder(teacher, self.decodable))
        self.state = State(config.method)

    def _encoder_cache(self, shared: EncoderCache | None) -> EncoderCache:
        """`shared` (or a new cache), bound to what determines an encoding: the frozen encoder's weights, the
        arithmetic (bf16 autocast) and the clips (the training manifest, by path and modification time)."""
        cache = shared if shared is not None else EncoderCache()
        train = Path(self.config.train).resolve()
        cache.bind((weights_fingerprint(whisper_of(self.decodable).model.encoder), self.config.bf16, str(train),
                    train.stat().st_mtime_ns))
        return cache

    def _check_inputs(self) -> None:
        config = self.config
        self.train_utts = select_split(validate_manifest(config.train), "train", config.train)
        outside = sorted({u.language for u in self.train_utts} - set(config.languages))
        if outside:
            raise ValueError(f"{config.train} holds languages outside --languages ({', '.join(outside)}); filter "
                             "the manifest or add them")
        if config.keep_translate and not any(u.metadata(TRANSLATION_REFERENCE) for u in self.train_utts):
            raise ValueError(f"--keep-translate: no training utterance of {config.train} has an English line (column "
                             f"{TRANSLATION_REFERENCE}; `data fillets` writes one)")
        if (config.trim or config.cache_encoder) and self.accelerator.num_processes > 1:
            raise ValueError("--trim/--cache-encoder run the encoder outside the DDP wrapper: use them with one "
                             "process")

    def _loader(self) -> DataLoader:
        config = self.config
        if config.cache_encoder and getattr(self.decodable.config, "dropout", 0.0):
            raise ValueError(f"--cache-encoder: {config.student} has dropout {self.decodable.config.dropout}, so "
                             "its encoder outputs are not deterministic in training")
        gen = self.decodable.generation_config
        eot = int(gen.eos_token_id)
        prompts = {lang: prompt_tokens(gen, lang) for lang in config.languages}
        translate = ({lang: prompt_tokens(gen, lang, task="translate") for lang in config.languages}
                     if config.keep_translate else None)
        self.sampler = LanguageBatches([u.language for u in self.train_utts], config.batch_size, config.seed,
                                       self.accelerator.num_processes)
        return DataLoader(SpeechDataset(self.train_utts, self.processor, prompts, eot, translate),
                          batch_sampler=self.sampler, collate_fn=lambda items: collate(items, eot))

    # ----- the run --------------------------------------------------------------------------------------------
    def run(self, resume: bool) -> TrainResult:
        if resume and not recover_dir(self.layout.checkpoint).joinpath(self.layout.state.name).is_file():
            # a job script reruns the same command after a kill; one that came before the first checkpoint starts over
            if self.accelerator.is_main_process:
                tqdm.write(f"--resume: no checkpoint under {self.layout.checkpoint} yet: starting from the beginning")
            resume = False
        rng = self._resume() if resume else self._start()
        self.saved_step = self.state.step if resume else None  # the step of the checkpoint on disk
        self._open_logs()
        self.started = time.perf_counter() - self.state.seconds  # training wall time adds up over resumed runs
        if not resume and self.config.dev:
            self._evaluate_and_keep()  # the untrained start is a candidate: a run that never beats it keeps it
        self.model.train()  # load_model hands out eval-mode models; the dev evaluations switch back and forth
        while self.state.step < self.total_steps and not self._out_of_patience():
            self._epoch(rng)
            rng = None
        self.bar.close()
        if self._out_of_patience() and self.accelerator.is_main_process:
            tqdm.write(f"step {self.state.step}: {self.config.patience} dev evaluations without a better kept model "
                       f"(--patience): stopped; kept step {self.state.best_step}")
        if self.state.evaluated_step != self.state.step:
            self._evaluate_and_keep()
        if self.saved_step != self.state.step:  # a run reused as it is (e.g. by the demo) is not written again
            self._checkpoint()
        self._close_logs()
        self.accelerator.wait_for_everyone()
        return TrainResult(self.state, self.unwrapped)

    def _start(self) -> None:
        if self.accelerator.is_main_process:
            atomic_write_json(self.layout.config, asdict(self.config))
            rewrite_jsonl(self.layout.metrics, [])  # rows of an earlier attempt in this folder would repeat steps

    def _resume(self) -> torch.Tensor | None:
        """Restore the checkpoint; returns the RNG state to put back once a mid-epoch loader has started."""
        self.state = load_checkpoint(self.accelerator, self.layout, self.config)
        if self.state.epoch_batches >= len(self.loader):  # saved on an epoch's last batch
            self.state.epoch, self.state.epoch_batches = self.state.epoch + 1, 0
        if self.accelerator.is_main_process:  # steps trained after the checkpoint were lost; so are their rows
            repair_jsonl(self.layout.metrics, keep=lambda row: row.get("step", math.inf) <= self.state.step)
        # a loader draws its seed from the global RNG when an epoch starts; the interrupted run had done that before
        # its checkpoint, so a mid-epoch resume restores the RNG again after the new loader's draw
        return torch.get_rng_state() if self.state.epoch_batches else None

    def _epoch(self, rng: torch.Tensor | None) -> None:
        """Train on the rest of the current epoch (or up to the last step)."""
        state = self.state
        self.sampler.set_epoch(state.epoch)
        self.loader.set_epoch(state.epoch)  # accelerate counts epochs from 0 itself and passes its count on
        loader = (self.accelerator.skip_first_batches(self.loader, state.epoch_batches) if state.epoch_batches
                  else self.loader)
        for batch in loader:
            if rng is not None:
                torch.set_rng_state(rng)
                rng = None
            state.epoch_batches += 1
            if not self._train_step(batch):
                continue
            evaluate_now = bool(self.config.eval_every) and state.step % self.config.eval_every == 0
            if evaluate_now:
                self._evaluate_and_keep()
            if evaluate_now or (self.config.save_every and state.step % self.config.save_every == 0):
                self._checkpoint()
            if state.step >= self.total_steps or (evaluate_now and self._out_of_patience()):
                return
        state.epoch, state.epoch_batches = state.epoch + 1, 0
        if not self.config.eval_every:
            self._evaluate_and_keep()
            self._checkpoint()

    def _out_of_patience(self) -> bool:
        """--patience dev evaluations in a row without a better kept model: training stops."""
        return self.state.out_of_patience(self.config.patience)

    def _train_step(self, batch: dict) -> bool:
        """Forward/backward on one batch; True when it completed an optimizer step (gradient accumulation)."""
        lr = self.scheduler.get_last_lr()[0]  # the learning rate this step applies
        with self.accelerator.accumulate(self.model):
            with torch.autocast(self.accelerator.device.type, torch.bfloat16, enabled=self.config.bf16):
                # the encoder and teacher run outside the DDP wrapper: under the same autocast
                terms = self.objective.terms(batch, self.state.step, self.total_steps)
            self.accelerator.backward(terms["loss"])
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
        if not self.accelerator.sync_gradients:
            return False
        self.state.step += 1
        self._log({**{k: float(v.detach()) for k, v in terms.items()}, "lr": lr})
        return True

    # ----- logs, evaluation, checkpoints ------------------------------------------------------------------------
    def _open_logs(self) -> None:
        main = self.accelerator.is_main_process
        self.bar = tqdm(total=self.total_steps, initial=self.state.step, desc=self.config.method, unit="step",
                        disable=not (self.progress and main))
        self.writer = _tensorboard(self.layout) if main else None
        self.metrics_log = self.layout.metrics.open("a") if main else None

    def _close_logs(self) -> None:
        if self.accelerator.is_main_process:
            self.writer.close()
            self.metrics_log.close()

    def _log(self, logged: dict[str, float]) -> None:
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in logged.items() if k != "lr"})
        self.bar.update(1)
        if not self.accelerator.is_main_process:
            return
        step = self.state.step
        for k, v in logged.items():
            self.writer.add_scalar(f"train/{k}", v, step)
        append_jsonl(self.metrics_log, [{"step": step, **logged}])

    def _checkpoint(self) -> None:
        self.state.seconds = round(time.perf_counter() - self.started, 1)
        save_checkpoint(self.accelerator, self.layout, self.state)
        self.saved_step = self.state.step

    def _evaluate_and_keep(self) -> None:
        """Dev WER with the hard gates (every process decodes its share); the best model so far is kept under best/
        by the main process: a LoRA adapter or the model at its best step, or, for CLSR methods, each language's
        experts at that language's best step (`State.kept_steps`)."""
        state, config, main = self.state, self.config, self.accelerator.is_main_process
        state.evaluated_step = state.step
        changed = None  # languages whose kept experts change (None: the whole kept model)
        if config.dev:
            state.dev_counts[str(state.step)] = self._dev_counts()
            if config.uses_experts:
                kept = state.kept_steps(config.languages)
                changed = [lang for lang, step in kept.items() if step == state.step]
                state.best_steps = kept
                wer, better = state.kept_dev_wer(state.step), bool(changed)
            else:
                wer = state.kept_dev_wer(state.step)  # no experts: the pooled dev WER of this step
                better = state.best_dev_wer is None or wer < state.best_dev_wer
            if better:
                state.best_dev_wer, state.best_step = wer, state.step
            if main:
                self.writer.add_scalar("dev/kept_wer", state.best_dev_wer, state.step)
                if config.uses_experts:
                    tqdm.write(f"step {state.step}: kept experts " + ", ".join(
                        f"{lang} from step {step}" for lang, step in kept.items())
                        + f" (dev WER {state.best_dev_wer:.2f})")
        else:
            better = True  # without dev, the last step is kept
        if main and better:
            save_best(config, self.layout, self.unwrapped, self.decodable, self.processor, changed,
                      state.best_steps)
        self.accelerator.wait_for_everyone()

    def _dev_counts(self) -> dict[str, list[int]]:
        """Per dev language [word errors, reference words], decoded as `evaluate` shares it out and as the test
        sets are (`trim` as in training); every process returns the same counts.  Records the routing too."""
        config, state, main = self.config, self.state, self.accelerator.is_main_process
        self.unwrapped.eval()
        clsr.routing_counts(self.unwrapped)  # reset the routing counters
        utterances = validate_manifest(config.dev, check_audio=False)
        utterances = select(utterances, split="dev" if any(u.split for u in utterances) else None,
                            limit=config.eval_limit, source=config.dev)
        encodings = self.objective.encoder_cache  # a frozen encoder: each dev batch is encoded once per process
        decoder = WhisperDecoder(self.decodable, self.processor, trim=config.trim,
                                 encodings=encodings.decoded if encodings is not None else None)
        rows = evaluate(decoder, utterances,
                        self.layout.dev(state.step), {"model": f"{config.student}+{config.method}@{state.step}",
                                                      "trim": config.trim},
                        config.batch_size, progress=False, fresh=True)
        self.unwrapped.train()
        counts = {lang: [int(c) for c in (errors.sum(), words.sum())]
                  for lang, group in by_language(rows).items() for errors, words in [result_counts(group, "wer")]}
        routing: dict[str, list[int]] = {}
        for part in gather(clsr.routing_counts(self.unwrapped), self.accelerator.state):
            for lang, (routed, seen) in part.items():
                routing[lang] = [a + b for a, b in zip(routing.get(lang, [0, 0]), (routed, seen))]
        seen = sum(s for _, s in routing.values())
        share = sum(r for r, _ in routing.values()) / seen if seen else None
        if seen:
            state.dev_routing[str(state.step)] = routing
        if main:
            wer = rate(rows, "wer")
            self.writer.add_scalar("dev/wer", wer, state.step)
            if share is not None:
                self.writer.add_scalar("dev/expert_fraction", share, state.step)
            tqdm.write(f"step {state.step}: dev WER {wer:.2f} (" + ", ".join(
                f"{lang} {100 * e / w:.1f}" for lang, (e, w) in counts.items() if w) + ")"
                + (f", {100 * share:.0f} % of tokens routed to experts" if share is not None else ""))
        return counts


def _tensorboard(layout: RunLayout):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(layout.tensorboard))
