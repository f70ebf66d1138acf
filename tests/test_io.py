"""The writing primitives never leave a torn file or folder, and logs survive a torn last row."""

from __future__ import annotations

import json

import pytest

from distilwhisper.io import (append_jsonl, atomic_dir, atomic_write_json, read_json, read_jsonl, recover_dir,
                              repair_jsonl, replace_dir, setting_changes)


def test_atomic_dir_keeps_the_old_version_when_the_new_one_fails(tmp_path):
    best = tmp_path / "best"
    with atomic_dir(best) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(best) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed while writing")
    assert (best / "weights").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # no temp folder left behind


def test_a_crash_between_the_two_renames_is_recovered(tmp_path):
    best = tmp_path / "best"
    with atomic_dir(best) as tmp:
        (tmp / "weights").write_text("v1")
    best.rename(tmp_path / ".best.old")  # what a kill after moving the old copy aside leaves
    assert (recover_dir(best) / "weights").read_text() == "v1"
    new = tmp_path / "new"
    new.mkdir()
    (new / "weights").write_text("v2")
    replace_dir(new, best)
    assert (best / "weights").read_text() == "v2" and not (tmp_path / ".best.old").exists()


def test_jsonl_torn_rows_are_dropped_and_repaired_atomically(tmp_path):
    log = tmp_path / "results.jsonl"
    with log.open("a", encoding="utf-8") as f:
        append_jsonl(f, [{"id": "a", "text": "č"}, {"id": "b"}])
        f.write('{"id": "c", "te')  # killed mid-row
    rows, clean = read_jsonl(log)
    assert [r["id"] for r in rows] == ["a", "b"] and not clean
    assert repair_jsonl(log, keep=lambda r: r["id"] != "b") == [{"id": "a", "text": "č"}]
    assert log.read_text(encoding="utf-8") == '{"id": "a", "text": "č"}\n'
    atomic_write_json(tmp_path / "c.json", {"x": 1})
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": 1}


def test_a_broken_json_file_is_named_and_setting_changes_are_spelt_as_flags(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text('{"steps": 3,\n "lr": }')  # edited by hand
    with pytest.raises(ValueError, match=rf"{path}: not valid JSON \(Expecting value, line 2 column 8\)"):
        read_json(path)
    assert setting_changes({"max_steps": 3, "lr": 0.1}, {"max_steps": 4, "lr": 0.1, "seed": 1}) == \
        "max-steps: 3, now 4, seed: None, now 1"  # a setting the folder lacks differs too
    assert setting_changes({"lr": 0.1}, {"lr": 0.1}) == ""


def test_a_folder_in_use_is_refused_and_a_dead_holders_lock_taken_over(tmp_path, capsys):
    import subprocess
    import sys

    from distilwhisper.cli import main
    from distilwhisper.io import FolderInUseError, exclusive

    out = tmp_path / "eval"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom distilwhisper.io import exclusive\n"
                               f"with exclusive({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderInUseError, match=rf"{out} is in use by pid {holder.pid} on "):
            with exclusive(out):
                pass
        assert main(["demo", "--quick", "--out", str(out)]) == 2  # refused before any work, one line
        assert f"is in use by pid {holder.pid} on " in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    # killed without releasing: the kernel dropped its flock; the next run takes over and says from whom
    with exclusive(out):
        pass
    assert f"taking over from pid {holder.pid} on " in capsys.readouterr().out
    with exclusive(out):  # released cleanly: nothing to take over
        pass
    assert "taking over" not in capsys.readouterr().out


def test_a_full_disk_names_the_file_and_keeps_what_was_written(tmp_path, monkeypatch):
    import errno
    import os

    from distilwhisper import io as dwio

    target = tmp_path / "summary.json"
    atomic_write_json(target, {"version": 1})
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dwio.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match=rf"{target}: not written \(No space left on device\); its previous version"):
        atomic_write_json(target, {"version": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temp file left behind


def test_a_real_full_disk_during_eval_names_the_file_and_a_rerun_finishes(tiny, tmp_path, capsys):
    """`eval` writing to a small tmpfs that fills up (where this process may mount one; the injected ENOSPC test
    above covers the rest): one error line naming the file, nothing finished lost, and once space is freed the
    same command completes with every utterance exactly once."""
    import subprocess

    from conftest import tiny_on_disk
    from distilwhisper.cli import main

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(small)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        manifest = tiny_on_disk(tiny, tmp_path, 6)
        args = ["eval", "--model", str(tmp_path / "tiny"), "--data", str(manifest), "--batch-size", "2",
                "--out", str(small / "out")]
        filler = small / "filler"
        with filler.open("wb", buffering=0) as f:  # fill the disk, then give back room for a few files only
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        with filler.open("r+b") as f:
            f.truncate(filler.stat().st_size - 5 * 4096)
        assert main(args) == 2
        error = capsys.readouterr().err
        assert "No space left on device" in error and str(small / "out") in error
        filler.unlink()
        assert main(args) == 0
        rows, clean = read_jsonl(small / "out" / "results.jsonl")
        assert clean and sorted(r["id"] for r in rows) == sorted(f"{lang}{i}" for lang in ("ca", "cs")
                                                                   for i in range(6))
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)
