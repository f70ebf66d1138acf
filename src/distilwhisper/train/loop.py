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

from distilwhisper import methods
from distilwhisper.decoding import prompt_tokens
from distilwhisper.distributed import exclusive_on_main
from distilwhisper.io import atomic_write_json, recover_dir, repair_jsonl, rewrite_jsonl
from distilwhisper.runs import RunLayout, State
from distilwhisper.train.caches import EncoderCache, TeacherCache
from distilwhisper.train.checkpoint import load_checkpoint, register_weight_hooks, save_best, save_checkpoint
from distilwhisper.train.config import TrainConfig
from distilwhisper.train.data import (JoinedLines, LanguageBatches, SpeechDataset, collate, data_summary,
                                     joined_lines, training_utterances)
from distilwhisper.train.dev import dev_counts
from distilwhisper.train.logs import RunLog
from distilwhisper.train.model import load_teacher, same_encoder, weights_fingerprint, whisper_of
from distilwhisper.train.objective import Objective


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


def bound_encoder_cache(shared: EncoderCache | None, config: TrainConfig, decodable) -> EncoderCache:
    """`shared` (or a new cache), bound to what determines an encoding: the frozen encoder's weights, the
    arithmetic (bf16 autocast) and the clips (the training manifest, by path and modification time)."""
    cache = shared if shared is not None else EncoderCache()
    train = Path(config.train).resolve()
    cache.bind((weights_fingerprint(whisper_of(decodable).model.encoder), config.bf16, str(train),
                train.stat().st_mtime_ns))
    return cache


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
        self.train_utts = training_utterances(config, self.accelerator.num_processes)
        self.joined = joined_lines(self.train_utts, config.joined_lines, config.seed)
        model, self.decodable, self.processor = methods.get(config.method).build(config)
        teacher = load_teacher(config, self.decodable, self.accelerator.device) if config.teacher else None
        loader = self._loader()
        self.total_steps = config.max_steps or max(1, int(config.epochs * math.ceil(
            len(self.sampler) / self.accelerator.num_processes / config.grad_accum)))
        params = [p for p in model.parameters() if p.requires_grad]
        # the fused kernel: one pass over each tensor instead of a dozen (benchmarks/optimizer_step.py measures it)
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
            bound_encoder_cache(encodings, config, self.decodable) if config.cache_encoder else None,
            teacher is not None and config.cache_encoder and same_encoder(teacher, self.decodable))
        self.state = State(config.method)

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
        items = [*self.train_utts, *self.joined]
        # joined items batch apart: beside single lines they would pad every clip of the batch to ~28 s of frames
        groups = [f"{u.language} joined" if isinstance(u, JoinedLines) else u.language for u in items]
        self.sampler = LanguageBatches(groups, config.batch_size, config.seed, self.accelerator.num_processes)
        return DataLoader(SpeechDataset(items, self.processor, prompts, eot, translate),
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
        self.log = RunLog(self.layout, self.total_steps, self.state.step, self.config.method, self.progress,
                          self.accelerator.is_main_process)
        self.started = time.perf_counter() - self.state.seconds  # training wall time adds up over resumed runs
        if not resume and self.config.dev:
            self._evaluate_and_keep()  # the untrained start is a candidate: a run that never beats it keeps it
        self.model.train()  # load_model hands out eval-mode models; the dev evaluations switch back and forth
        while self.state.step < self.total_steps and not self._out_of_patience():
            self._epoch(rng)
            rng = None
        if self._out_of_patience() and self.accelerator.is_main_process:
            tqdm.write(f"step {self.state.step}: {self.config.patience} dev evaluations without a better kept model "
                       f"(--patience): stopped; kept step {self.state.best_step}")
        if self.state.evaluated_step != self.state.step:
            self._evaluate_and_keep()
        if self.saved_step != self.state.step:  # a run reused as it is (e.g. by the demo) is not written again
            self._checkpoint()
        self.log.close()
        self.accelerator.wait_for_everyone()
        return TrainResult(self.state, self.unwrapped)

    def _start(self) -> None:
        if self.accelerator.is_main_process:
            atomic_write_json(self.layout.config, asdict(self.config))
            atomic_write_json(self.layout.data, data_summary(self.config.train, self.train_utts, len(self.joined)))
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
        self.log.step(self.state.step, {**{k: float(v.detach()) for k, v in terms.items()}, "lr": lr})
        return True

    # ----- evaluation, checkpoints ------------------------------------------------------------------------------
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
            encodings = self.objective.encoder_cache  # a frozen encoder: each dev clip is encoded once per process
            state.dev_counts[str(state.step)] = dev_counts(
                config, self.layout, state, self.unwrapped, self.decodable, self.processor,
                encodings.decoded if encodings is not None else None, self.accelerator.state, self.log)
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
                self.log.scalar("dev/kept_wer", state.best_dev_wer, state.step)
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
