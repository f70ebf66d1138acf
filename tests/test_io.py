"""The writing primitives never leave a torn file or folder, and logs survive a torn last row."""

from __future__ import annotations

import json

import pytest

from distilwhisper.io import (append_jsonl, atomic_dir, atomic_write_json, read_jsonl, recover_dir, repair_jsonl,
                              replace_dir)


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
