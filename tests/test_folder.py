"""`distilwhisper data folder` (issue #38): every layout, bad rows reported by file:line and left out, the seeded
speaker-disjoint split, and a round trip (a folder written from a manifest imports back to the same rows)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from distilwhisper.cli import main
from distilwhisper.data.folder import load_folder
from distilwhisper.data.manifest import read_manifest
from conftest import write_wav


def _clips(root: Path, n: int) -> list[Path]:
    return [write_wav(root / "audio" / f"clip{i}.wav", 1.0 + 0.1 * i) for i in range(n)]


def test_an_audiofolder_with_metadata_csv_imports_with_its_columns(tmp_path):
    clips = _clips(tmp_path, 3)
    with (tmp_path / "metadata.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "transcription", "speaker", "gender", "split", "accent"])
        for i, clip in enumerate(clips):
            writer.writerow([clip.relative_to(tmp_path).as_posix(), f"věta {i}", f"s{i}", "Female", "train", "jih"])
    utts, skipped, counts = load_folder(tmp_path, "cs")
    assert not skipped and counts == {"train": 3}
    assert [u.text for u in utts] == ["věta 0", "věta 1", "věta 2"]
    assert utts[0].speaker == "s0" and utts[0].gender == "female" and utts[0].extra == {"accent": "jih"}
    assert utts[0].language == "cs" and Path(utts[0].audio) == clips[0]


def test_metadata_jsonl_and_same_name_transcripts_import_too(tmp_path):
    jsonl = tmp_path / "a"
    clips = _clips(jsonl, 2)
    (jsonl / "metadata.jsonl").write_text("".join(json.dumps({"file_name": c.relative_to(jsonl).as_posix(),
                                                              "text": f"ahoj {i}"}) + "\n" for i, c in enumerate(clips)))
    assert [u.text for u in load_folder(jsonl, "cs")[0]] == ["ahoj 0", "ahoj 1"]
    pairs = tmp_path / "b"
    for i, clip in enumerate(_clips(pairs, 2)):
        clip.with_suffix(".txt").write_text(f"dobrý den {i}\n", encoding="utf-8")
    assert [u.text for u in load_folder(pairs, "cs")[0]] == ["dobrý den 0", "dobrý den 1"]


def test_a_table_with_named_columns_imports(tmp_path):
    clips = _clips(tmp_path, 2)
    (tmp_path / "list.tsv").write_text("path\tsentence\n" + "".join(
        f"{c.relative_to(tmp_path).as_posix()}\tslovo {i}\n" for i, c in enumerate(clips)))
    utts, _, _ = load_folder(tmp_path, "cs", table="list.tsv", path_column="path")
    assert [u.text for u in utts] == ["slovo 0", "slovo 1"]
    with pytest.raises(ValueError, match="no column 'file'.*--path-column"):
        load_folder(tmp_path, "cs", table="list.tsv", path_column="file")
    with pytest.raises(ValueError, match="no column 'words'"):
        load_folder(tmp_path, "cs", table="list.tsv", path_column="path", text_column="words")


def test_every_bad_row_is_named_by_file_and_line_and_the_rest_imports(tmp_path):
    good = _clips(tmp_path, 1)[0]
    long = write_wav(tmp_path / "audio" / "long.wav", 31.0)
    (tmp_path / "audio" / "broken.wav").write_bytes(b"RIFF nonsense")
    rows = [(good, "fine"), (good, "   "), (tmp_path / "audio" / "missing.wav", "text"), (long, "too long"),
            (tmp_path / "audio" / "broken.wav", "broken")]
    with (tmp_path / "metadata.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "text"])
        for path, text in rows:
            writer.writerow([path.relative_to(tmp_path).as_posix(), text])
    utts, skipped, _ = load_folder(tmp_path, "cs")
    assert [u.text for u in utts] == ["fine"]
    metadata = tmp_path / "metadata.csv"
    assert skipped[0] == f"{metadata}:3: empty text (import it with --unlabelled to pseudo-label it)"
    assert skipped[1].startswith(f"{metadata}:4: audio file not found")
    assert skipped[2].startswith(f"{metadata}:5: 31.0 s is longer than Whisper's 30 s window")
    assert skipped[3].startswith(f"{metadata}:6: unreadable audio")


def test_without_a_split_column_speakers_never_share_a_split(tmp_path):
    clips = [write_wav(tmp_path / "audio" / f"c{i}.wav", 1.0) for i in range(40)]
    with (tmp_path / "metadata.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "text", "speaker"])
        for i, clip in enumerate(clips):
            writer.writerow([clip.relative_to(tmp_path).as_posix(), f"t{i}", f"speaker{i % 10}"])
    utts, _, counts = load_folder(tmp_path, "cs", seed=3)
    splits = {}
    for u in utts:
        splits.setdefault(u.speaker, set()).add(u.split)
    assert all(len(s) == 1 for s in splits.values())  # speaker-disjoint
    assert set(counts) == {"train", "dev", "test"} and counts["dev"] == counts["test"] == 4  # one speaker each
    again, _, _ = load_folder(tmp_path, "cs", seed=3)
    assert [u.split for u in again] == [u.split for u in utts]  # seeded


def test_a_folder_written_from_a_manifest_imports_back_to_the_same_rows(tmp_path, capsys):
    source = tmp_path / "src"
    clips = _clips(source, 3)
    rows = [{"id": f"x{i}", "audio": str(c), "text": f"věta {i}", "language": "cs", "speaker": f"s{i}",
             "gender": "male", "split": ("train", "dev", "test")[i]} for i, c in enumerate(clips)]
    (source / "m.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    original, _ = read_manifest(source / "m.jsonl")
    folder = tmp_path / "folder"
    folder.mkdir()
    with (folder / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "transcription", "speaker", "gender", "split"])
        for u in original:
            name = Path(u.audio).name
            (folder / name).write_bytes(Path(u.audio).read_bytes())
            writer.writerow([name, u.text, u.speaker, u.gender, u.split])
    assert main(["data", "folder", str(folder), "--language", "cs", "--out", str(tmp_path / "out")]) == 0
    assert "rows per split: dev 1, test 1, train 1" in capsys.readouterr().out
    back, problems = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert not problems
    def row(u):
        return u.text, u.speaker, u.gender, u.split, Path(u.audio).read_bytes()

    assert sorted(map(row, back)) == sorted(map(row, original))


def test_a_folder_with_nothing_to_import_and_an_unknown_language_are_named(tmp_path, capsys):
    assert main(["data", "folder", str(tmp_path), "--language", "cs", "--out", str(tmp_path / "o")]) == 2
    assert "nothing to import" in capsys.readouterr().err
    assert main(["data", "folder", str(tmp_path), "--language", "xx", "--out", str(tmp_path / "o")]) == 2
    assert "unknown language code 'xx'" in capsys.readouterr().err
