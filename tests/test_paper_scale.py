"""The paper-scale probe runs (at toy sizes here; full size on a GPU) and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_paper_scale_probe_at_tiny_size():
    script = Path(__file__).parent.parent / "benchmarks" / "paper_scale.py"
    proc = subprocess.run([sys.executable, str(script), "--size", "tiny", "--batch-size", "2", "--tokens", "6",
                           "--steps", "1", "--decode-clips", "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for row in ("DistilWhisper step, live teacher", "cached teacher (every batch a hit)", "teacher cache fill",
                "greedy decoding, student with experts (cs)", "experts / no experts decode time"):
        assert row in proc.stdout, proc.stdout
