"""What a run writes about itself while it trains: a progress bar (every process may show one), and, on the main
process only, TensorBoard scalars and one `metrics.jsonl` row of loss terms per optimizer step (appended and
flushed, so a killed run keeps every finished step's row)."""

from __future__ import annotations

from tqdm import tqdm

from distilwhisper.io import append_jsonl
from distilwhisper.runs import RunLayout


class RunLog:
    """The run's bar, TensorBoard writer and metrics file (writer and file on the main process only)."""

    def __init__(self, layout: RunLayout, total: int, done: int, name: str, progress: bool, main: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.main = main
        self.bar = tqdm(total=total, initial=done, desc=name, unit="step", disable=not (progress and main))
        self.writer = SummaryWriter(str(layout.tensorboard)) if main else None
        self.metrics = layout.metrics.open("a") if main else None

    def step(self, step: int, logged: dict[str, float]) -> None:
        """One optimizer step's loss terms (and learning rate)."""
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in logged.items() if k != "lr"})
        self.bar.update(1)
        if not self.main:
            return
        for k, v in logged.items():
            self.writer.add_scalar(f"train/{k}", v, step)
        append_jsonl(self.metrics, [{"step": step, **logged}])

    def scalar(self, name: str, value: float, step: int) -> None:
        if self.main:
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        self.bar.close()
        if self.main:
            self.writer.close()
            self.metrics.close()
