"""What a training method is, as the rest of the toolkit sees it.

A method decides four things and nothing else: which settings it needs (`check`), which model trains and which
decodes for dev WER (`build`), what a run keeps of it (`save`), and how a kept run becomes a model ready to decode
(`load`).  The training loop, the run folder (`runs.py`) and every command work through this interface only, so
that a new method is one module beside the others and one line in the registry (`methods/__init__.py`), as a tuner
is in peft.
"""

from __future__ import annotations

from dataclasses import MISSING, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from distilwhisper.train.config import TrainConfig


def setting(default: Any, help: str, **extra) -> Any:
    """A training setting: its default (`MISSING`: a required one) and the help of its `train` flag
    (`cli.add_config_flags` reads them, and `min`/`choices` in `extra`)."""
    metadata = {"help": help, **extra}
    return field(metadata=metadata) if default is MISSING else field(default=default, metadata=metadata)


class Method:
    """The base of every training method: a plain Whisper model that trains and decodes as one.  Subclasses set
    the class attributes and override the four steps they change."""

    name: str = ""  # the `--method` value; saved in a run's config.json
    title: str = ""  # the name in tables and reports
    uses_experts: bool = False  # language experts beside a frozen shared model: kept per language, gated routing
    needs_teacher: bool = False  # distils from `--teacher`: the objective adds the KD term

    def check(self, config: "TrainConfig") -> None:
        """Refuse settings this method cannot honour, naming the flag, before any work."""
        if self.needs_teacher and not config.teacher:
            raise ValueError(f"--method {self.name} needs --teacher (use clsr-ft to train experts without one)")
        if not self.needs_teacher and (config.teacher or config.teacher_cache):
            raise ValueError(f"--teacher/--teacher-cache only apply to a method that distils (distilwhisper), not "
                             f"{self.name}")
        if config.keep_translate and not self.uses_experts:
            raise ValueError(f"--keep-translate needs experts beside a frozen base (distilwhisper, clsr-ft), not "
                             f"--method {self.name}")

    def build(self, config: "TrainConfig") -> tuple[nn.Module, nn.Module, object]:
        """(the model that trains, the Whisper model that decodes dev, processor), from `config.student`."""
        raise NotImplementedError

    def save(self, config: "TrainConfig", folder: Path, trained: nn.Module, decodable: nn.Module, processor,
             previous: Path | None, languages: list[str] | None, kept_steps: dict[str, int] | None) -> None:
        """Write the kept model into the empty `folder` (swapped in for `previous`, the kept model so far, by the
        caller).  `languages`: with experts, only these languages' experts change."""
        raise NotImplementedError

    def load(self, config: "TrainConfig", folder: Path) -> tuple[nn.Module, object]:
        """(model, processor) of what `save` wrote into `folder`, ready to decode."""
        raise NotImplementedError
