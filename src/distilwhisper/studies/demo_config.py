"""The settings of the demo, which are also those of the experiment engine (`experiments.py`) and the benchmarks
built on it: corpus sizes, training budget, each method's learning rate, precision and seed."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from distilwhisper.quantize import has_bf16_units
from distilwhisper.train.config import check_dropout, check_lr, check_weight

SPECIALIST = "specialist"  # a run's teacher: the FT baseline of the same output folder, trained first on the same data

QUICK = dict(per_language=10, test_per_language=2, control_per_language=3, real_test_per_language=3,
             held_out_per_language=2, dev_per_language=2, steps=3, batch_size=4)


@dataclass
class DemoConfig:
    """`distilwhisper demo`: the whole story offline: corpus, base model, DistilWhisper experts, baselines.
    Rerunning with the same --out resumes every stage; --quick runs every stage on tiny sizes."""

    languages: list[str] = field(default_factory=lambda: ["ca", "cs"],
                                 metadata={"help": "target languages with offline TTS voices"})
    control: list[str] = field(default_factory=lambda: ["en", "es"], metadata={
        "help": "control languages: recorded asterisk prompts, never trained on"})
    out: str = field(default="demo-out", metadata={"help": "output folder"})
    student: str = field(default="bundled:base", metadata={"help": "student model (paper: openai/whisper-small)"})
    teacher: str = field(default=SPECIALIST, metadata={
        "help": f"DistilWhisper's teacher (paper: openai/whisper-large-v2): '{SPECIALIST}' = the FT baseline of this "
                f"demo, trained first (it knows the target languages better than the student; the default, chosen "
                f"on dev against the student as its own teacher, docs/results.md), a model reference "
                f"(the student's own name: self-teacher) or a `train` run folder"})
    compare: bool = field(default=False, metadata={"help": "also train CLSR-FT, FT, LoRA and DistilWhisper from the "
                                                           "other teacher (the student itself or the specialist) with "
                                                           "the same data, steps and layers (--scope)"})
    quick: bool = field(default=False, metadata={"help": "tiny sizes that check every stage in minutes: " + ", ".join(
        f"{k.replace('_', '-')} {v}" for k, v in QUICK.items())})
    per_language: int = field(default=360, metadata={"min": 1, "help": "synthesised sentences per target language"})
    test_per_language: int = field(default=24, metadata={
        "help": "of which in each test set, in-domain and out-of-domain; dev gets a tenth of the rest (at most as "
                "many), train the remainder"})
    control_per_language: int = field(default=16, metadata={"help": "recorded prompts per control language"})
    real_test_per_language: int = field(default=96, metadata={
        "help": "real-speech lines (held-out scenes) in the in-domain and translate tests of a language with real "
                "speech (cs)"})
    held_out_per_language: int = field(default=48, metadata={
        "help": "real-speech lines of characters never heard in training, per language with real speech"})
    dev_per_language: int = field(default=48, metadata={"help": "real-speech dev lines per language with real "
                                                                "speech (checkpoint choice)"})
    steps: int = field(default=300, metadata={"help": "optimizer steps per method"})
    patience: int = field(default=0, metadata={
        "min": 0, "help": "stop a run once this many dev evaluations in a row have not improved it (0: train every "
                          "step; benchmarks/method_quality.py stops on it)"})
    eval_every: int | None = field(default=None, metadata={
        "min": 1, "help": "dev evaluations (checkpoint candidates) every N steps (default: half-way and at the end; "
                          "--quick: at the end)"})
    batch_size: int = field(default=8, metadata={"min": 1, "help": "utterances per batch, training and decoding"})
    lr: float = field(default=1e-3, metadata={
        "help": "learning rate of experts, gates and LoRA (DistilWhisper's, chosen on dev at 300 steps from 3e-4, "
                "1e-3, 3e-3: benchmarks/records/method_quality_300steps)"})
    ft_lr: float = field(default=3e-4, metadata={
        "help": "learning rate of FT, which is also the specialist teacher (chosen on dev at 300 steps from 3e-5, "
                "1e-4, 3e-4; each method's rate is its own)"})
    expert_dropout: float = field(default=0.3, metadata={
        "help": "dropout after each expert in training (CLSR methods; the paper's 0.3)"})
    keep_translate: float = field(default=0.0, metadata={
        "help": "CLSR methods: weight of the term that trains the experts to keep the base model's translate-task "
                "outputs on the real Czech training lines, so that they also decode that task (train "
                "--keep-translate); 0: the paper's recipe, and experts that learn transcription only leave the "
                "translate task to the shared FFNs (the base model). Chosen on dev from 0, 0.1, 0.3, 1, 3: the "
                "lowest dev WER among the weights whose served dev chrF is not below the base model's "
                "(benchmarks/records/keep_translate)"})
    scope: str = field(default="decoder", metadata={
        "help": "layers that train, for every method (decoder: the frozen encoder then runs once per clip; all = "
                "the paper's setting, slower per step). decoder is the demo's: chosen against all on real Czech dev "
                "at equal training minutes, each scope at its dev-chosen rates (docs/results.md)",
        "choices": ("all", "encoder", "decoder")})
    threads: int | None = field(default=None, metadata={"min": 1, "help": "torch threads (default: all cores)"})
    train_precision: str = field(default="auto", metadata={
        "help": "training arithmetic: bf16 autocast or fp32; auto = bf16 where the hardware has bf16 units (GPUs, "
                "CPUs with AVX-512 BF16 or AMX; benchmarks/clsr_speed.py measures it), fp32 elsewhere (emulated "
                "bf16 is several times slower); evaluation is fp32 always", "choices": ("auto", "bf16", "fp32")})
    seed: int = field(default=0, metadata={"help": "random seed of the corpus and of training"})

    def __post_init__(self) -> None:
        check_dropout("--expert-dropout", self.expert_dropout)  # before minutes of corpus and evaluation
        check_weight("--keep-translate", self.keep_translate)
        check_lr("--lr", self.lr)
        check_lr("--ft-lr", self.ft_lr)

    @classmethod
    def make(cls, quick: bool = False, **overrides) -> "DemoConfig":
        """The default sizes (or `QUICK`'s), with the non-None `overrides`."""
        values = {**(QUICK if quick else {}), **{k: v for k, v in overrides.items() if v is not None}}
        return cls(quick=quick, **values)

    @property
    def bf16(self) -> bool:
        """Train under bf16 autocast (`train_precision`, resolved on this machine)."""
        return self.train_precision == "bf16" or (self.train_precision == "auto" and has_bf16_units(
            "cuda" if torch.cuda.is_available() else "cpu"))

    def method_lr(self, method: str) -> float:
        """A method's own learning rate: --ft-lr for the ones it names, --lr for every other."""
        return {"ft": self.ft_lr}.get(method, self.lr)
