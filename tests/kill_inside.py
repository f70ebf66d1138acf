"""Run the distilwhisper CLI and SIGKILL it *inside* a write: the fault tests' way to hit the moments between two
system calls that a watcher outside the process cannot time.

    python tests/kill_inside.py POINT N -- <distilwhisper arguments>

POINT is where the process dies, on the N-th time it gets there (1-based):
  append          halfway through the text of an `append_jsonl` call (rows of results.jsonl / metrics.jsonl)
  atomic:NAME     inside an atomic write of a file whose name matches NAME (a glob), with the temp file half written,
                  before the rename
  swap-before     inside a folder swap (`replace_dir`: checkpoint/, best/, converted models), the new folder complete
                  and not yet moved in
  swap-between    inside a folder swap, between moving the old version aside and moving the new one in
  tensors:NAME    halfway through writing a safetensors file whose name matches NAME (trainable.safetensors: inside
                  a checkpoint write)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from fnmatch import fnmatch
from pathlib import Path


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str, nth: int) -> None:
    """Replace the primitive `point` names, in `distilwhisper.io` and in every module that imported it by name."""
    import safetensors.torch

    from distilwhisper import io  # imports the package: the names below are bound in its modules by now

    calls = {"n": 0}

    def due() -> bool:
        calls["n"] += 1
        return calls["n"] == nth

    originals = {}
    if point == "append":
        def append_jsonl(f, rows):
            text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            if due():
                f.write(text[: max(1, len(text) // 2)])
                f.flush()
                die()
            f.write(text)
            f.flush()
        originals[io.append_jsonl] = append_jsonl
    elif point.startswith("atomic:"):
        name = point.split(":", 1)[1]
        original = io.atomic_write_bytes

        def atomic_write_bytes(path, data):
            if fnmatch(Path(path).name, name) and due():
                fd, _ = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".tmp", dir=Path(path).parent)
                os.write(fd, data[: len(data) // 2])
                die()
            return original(path, data)
        originals[original] = atomic_write_bytes
    elif point in ("swap-before", "swap-between"):
        original = io.replace_dir

        def replace_dir(new, final):
            if due():
                if point == "swap-between":
                    final = io.recover_dir(final)
                    if final.exists():
                        final.rename(io._old(final))
                die()
            return original(new, final)
        originals[original] = replace_dir
    elif point.startswith("tensors:"):
        name = point.split(":", 1)[1]
        original = safetensors.torch.save_file

        def save_file(tensors, filename, metadata=None):
            if fnmatch(Path(filename).name, name) and due():
                original(tensors, filename, metadata)
                with open(filename, "r+b") as f:
                    f.truncate(os.path.getsize(filename) // 2)
                die()
            return original(tensors, filename, metadata)
        originals[original] = save_file
    else:
        raise SystemExit(f"unknown kill point {point!r}")
    for module in list(sys.modules.values()):
        if module is None or not (module.__name__.startswith(("distilwhisper", "safetensors", "accelerate"))):
            continue
        for attribute, value in list(vars(module).items()):
            if any(value is original for original in originals):
                setattr(module, attribute, originals[value])


if __name__ == "__main__":
    point, nth, separator, *argv = sys.argv[1:]
    assert separator == "--", __doc__
    install(point, int(nth))
    from distilwhisper.cli import main

    sys.exit(main(argv))
