"""`data pseudo-label` (issue #38): rows without text get the teacher's transcript, filtered by teacher-student
agreement, resumable; `data folder --unlabelled` feeds it; training reads the result and records what it used."""

from __future__ import annotations

import json

import pytest
import torch

from distilwhisper.audio import load_audio
from distilwhisper.cli import main
from distilwhisper.data.manifest import PSEUDO_LABEL, read_manifest, validate_manifest, write_manifest
from distilwhisper.data.pseudo_label import DISAGREEMENT, agrees, disagreement, pseudo_label
from distilwhisper.decoding import WhisperDecoder
from distilwhisper.evaluate import ONE_PASS
from conftest import tiny_on_disk

SHORT = ONE_PASS.with_(max_new_tokens=12)  # the tiny model's text is noise: a few tokens show the behaviour


def test_disagreement_is_the_students_wer_against_the_teacher():
    assert disagreement("Dobrý den, pane.", "dobrý den pane", "cs") == 0.0
    assert disagreement("dobrý den pane", "dobrý večer pane", "cs") == pytest.approx(1 / 3)
    assert disagreement("", "cokoli", "cs") == 1.0  # a teacher that wrote nothing is never trusted


@pytest.fixture
def unlabelled(tiny, tmp_path):
    """A manifest of 4 clips per language, the odd ones without text; the tiny model saved beside it."""
    manifest = tiny_on_disk(tiny, tmp_path, per_language=4)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for k, row in enumerate(rows):
        if k % 2:
            row["text"] = ""
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return manifest, tmp_path / "tiny"


def _decoder(path) -> WhisperDecoder:
    from distilwhisper.runs import model_or_run

    return WhisperDecoder(*model_or_run(str(path)))


class Counting:
    """A decoder that counts the clips it is asked for."""

    def __init__(self, decoder):
        self.decoder, self.clips = decoder, 0

    def transcribe(self, audios, languages, options=None, **changes):
        self.clips += len(audios)
        return self.decoder.transcribe(audios, languages, options, **changes)


def test_rows_without_text_get_the_teachers_transcript_and_a_rerun_decodes_nothing(unlabelled, tmp_path):
    manifest, tiny = unlabelled
    with pytest.raises(ValueError, match="empty text"):  # training and eval refuse them
        validate_manifest(manifest)
    teacher = Counting(_decoder(tiny))
    out, counts, bad = pseudo_label(manifest, teacher, _decoder(tiny), "tiny", tmp_path / "labelled.jsonl",
                                    max_disagreement=None, batch_size=3, options=SHORT, progress=False)
    assert (counts.kept_human, counts.pseudo_labelled + counts.dropped_empty, bad) == (4, 4, [])
    assert teacher.clips == 4  # only the rows without text
    rows, problems = read_manifest(out)
    assert not problems and len(rows) == 8 - counts.dropped_empty
    labelled = [r for r in rows if r.extra.get(PSEUDO_LABEL)]
    assert labelled, "the tiny model writes some text"
    unlabelled_rows = {u.id: u for u in read_manifest(manifest, unlabelled_ok=True)[0] if not u.text}
    for row in labelled:  # the teacher's own greedy transcript of the clip, in the row's language
        [alone] = _decoder(tiny).transcribe([load_audio(unlabelled_rows[row.id].audio)], row.language, SHORT)
        assert row.text == alone.text.strip()
    for row in labelled:
        assert float(row.extra["teacher_student_wer"]) == 0.0  # the student is the teacher here
        assert float(row.extra["teacher_avg_logprob"]) <= 0.0
    again = Counting(_decoder(tiny))
    pseudo_label(manifest, again, again, "tiny", tmp_path / "labelled.jsonl", max_disagreement=None,
                 options=SHORT, progress=False)
    assert again.clips == 0  # everything came from labelled.partial.jsonl


def test_an_interrupted_run_decodes_only_what_it_lacks(unlabelled, tmp_path):
    manifest, tiny = unlabelled

    class Dies(Counting):
        def transcribe(self, audios, languages, options=None, **changes):
            if self.clips >= 2:
                raise KeyboardInterrupt
            return super().transcribe(audios, languages, options, **changes)

    with pytest.raises(KeyboardInterrupt):
        pseudo_label(manifest, Dies(_decoder(tiny)), _decoder(tiny), "tiny", tmp_path / "m2.jsonl", batch_size=2,
                     options=SHORT, progress=False)
    assert not (tmp_path / "m2.jsonl").exists()
    teacher = Counting(_decoder(tiny))
    pseudo_label(manifest, teacher, _decoder(tiny), "tiny", tmp_path / "m2.jsonl", batch_size=2, options=SHORT,
                 progress=False)
    assert teacher.clips == 2  # the first batch was kept


def test_disagreeing_rows_are_dropped_and_relabel_keeps_the_human_text(unlabelled, tmp_path, tiny):
    manifest, tiny_path = unlabelled
    model, processor = tiny
    torch.manual_seed(1)
    other = model.__class__(model.config).eval()  # another random model: it disagrees with the teacher
    other.generation_config = model.generation_config
    student = WhisperDecoder(other, processor)
    _, strict, _ = pseudo_label(manifest, _decoder(tiny_path), student, "tiny", tmp_path / "strict.jsonl",
                                max_disagreement=0.1, options=SHORT, progress=False)
    assert strict.pseudo_labelled == 0 and strict.dropped_disagreement + strict.dropped_empty == 4
    loose, _, _ = pseudo_label(manifest, _decoder(tiny_path), student, "tiny", tmp_path / "loose.jsonl",
                               max_disagreement=None, options=SHORT, progress=False)
    loose_rows = read_manifest(loose)[0]
    assert len(loose_rows) == 8 - strict.dropped_empty  # every pseudo-label kept, with its disagreement
    for limit in (0.1, 1.0, None):  # filtering the stored column again = labelling with that limit
        again, _, _ = pseudo_label(manifest, _decoder(tiny_path), student, "tiny", tmp_path / f"{limit}.jsonl",
                                   max_disagreement=limit, options=SHORT, progress=False)
        assert [u.id for u in loose_rows if agrees(u, limit)] == [u.id for u in read_manifest(again)[0]]
    edited = next(u for u in loose_rows if u.extra.get(PSEUDO_LABEL))
    del edited.extra[DISAGREEMENT]  # a row edited by hand: filtering it by agreement is refused, naming it
    assert agrees(edited, None)
    with pytest.raises(ValueError, match=f"{edited.id}.*{DISAGREEMENT}"):
        agrees(edited, 0.5)
    out, counts, _ = pseudo_label(manifest, _decoder(tiny_path), _decoder(tiny_path), "tiny",
                                  tmp_path / "all.jsonl", relabel=True, max_disagreement=None, options=SHORT, progress=False)
    assert counts.kept_human == 0
    rows = read_manifest(out)[0]
    assert {r.extra.get("human_text") for r in rows if r.id in ("ca0", "cs0")} == {"bon dia", "dobrý den"}


def test_cli_imports_unlabelled_audio_labels_it_and_training_records_it(tiny, tmp_path, capsys):
    manifest = tiny_on_disk(tiny, tmp_path, per_language=3)
    folder = tmp_path / "mine"
    folder.mkdir()
    for k, line in enumerate(manifest.read_text().splitlines()):
        row = json.loads(line)
        if row["language"] != "ca":
            continue
        (folder / f"c{k}.wav").write_bytes(open(row["audio"], "rb").read())
        if k == 0:
            (folder / f"c{k}.txt").write_text(row["text"])
    assert main(["data", "folder", str(folder), "--language", "ca", "--out", str(tmp_path / "f.jsonl")]) == 0
    assert "2 skipped" in capsys.readouterr().out  # audio without a transcript, by default
    assert main(["data", "folder", str(folder), "--language", "ca", "--out", str(tmp_path / "f.jsonl"),
                 "--unlabelled"]) == 0
    assert main(["data", "pseudo-label", str(tmp_path / "f.jsonl"), "--teacher", str(tmp_path / "tiny"),
                 "--student", str(tmp_path / "tiny"), "--out", str(tmp_path / "p.jsonl"),
                 "--max-disagreement", "none"]) == 0
    said = capsys.readouterr().out
    assert "1 rows with their own text" in said
    rows = read_manifest(tmp_path / "p.jsonl")[0]
    pseudo = sum(1 for r in rows if r.extra.get(PSEUDO_LABEL))
    for r in rows:
        r.split = "train"
    write_manifest(tmp_path / "p.jsonl", rows)
    assert main(["train", "--method", "ft", "--student", str(tmp_path / "tiny"), "--languages", "ca", "--train",
                 str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "run"), "--max-steps", "1", "--batch-size",
                 "2", "--scope", "decoder"]) == 0
    data = json.loads((tmp_path / "run" / "data.json").read_text())
    assert data["utterances"] == len(rows) and data["pseudo_labelled"] == pseudo and pseudo >= 1
    with pytest.raises(SystemExit):
        main(["data", "pseudo-label", str(tmp_path / "f.jsonl"), "--teacher", "x", "--out", "y",
              "--max-disagreement", "ten"])
    assert "a WER such as 0.1, or none" in capsys.readouterr().err
