"""Evaluation writes results as it goes, resumes without re-decoding, reports bad input, and summarises."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from distilwhisper.cli import main
from distilwhisper.decoding import WhisperDecoder
from distilwhisper.data.manifest import read_manifest, write_manifest
from distilwhisper.evaluate import ONE_PASS, evaluate
from distilwhisper.io import read_json
from conftest import tiny_on_disk, write_wav


class CountingDecoder(WhisperDecoder):
    """The real decoder, counting how many clips it decodes."""

    decoded = 0

    def transcribe(self, audios, languages, options=None, **changes):
        CountingDecoder.decoded += len(audios)
        return super().transcribe(audios, languages, options, **{**changes, "max_new_tokens": 6})


def _manifest(tmp_path):
    rows = []
    for i, (lang, gender) in enumerate([("ca", "female"), ("ca", "male"), ("cs", "female"), ("cs", "male")]):
        rows.append({"id": f"u{i}", "audio": str(write_wav(tmp_path / f"{i}.wav", 1.0 + i)), "text": "bon dia",
                     "language": lang, "gender": gender, "speaker": f"s{i}"})
    rows.append({"id": "bad", "audio": str(tmp_path / "missing.wav"), "text": "x", "language": "ca"})
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _evaluate(manifest, out, decoder, beam_size=1):
    """Evaluate like `eval` does: the good manifest lines, the bad ones reported; returns the summary."""
    utterances, problems = read_manifest(manifest)
    evaluate(decoder, utterances, out, {"model": "tiny", "beam_size": beam_size}, batch_size=2,
             options=ONE_PASS.with_(beam_size=beam_size), problems=[(manifest.name, line, msg) for line, msg in problems], progress=False)
    return read_json(out / "summary.json")


def test_evaluate_resume_and_summary(tiny, tmp_path):
    model, processor = tiny
    manifest, out = _manifest(tmp_path), tmp_path / "out"
    CountingDecoder.decoded = 0
    decoder = CountingDecoder(model, processor)
    summary = _evaluate(manifest, out, decoder)
    assert CountingDecoder.decoded == 4
    assert "m.jsonl:5: bad: audio file not found" in (out / "skipped.txt").read_text()
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["u0", "u1", "u2", "u3"]
    assert {"reference_norm", "hypothesis_norm", "word_errors", "words", "decode_seconds", "gender"} <= set(rows[0])
    assert set(summary["languages"]) == {"ca", "cs"}
    assert set(summary["groups"]["gender"]["ca"]) == {"female", "male"}
    assert summary["skipped_lines"] == 1
    assert "| ca | female |" in (out / "summary.md").read_text()

    # a crash mid-write leaves a torn line: it is dropped and that utterance decoded again, nothing else
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
    CountingDecoder.decoded = 0
    _evaluate(manifest, out, decoder)
    assert CountingDecoder.decoded == 1
    assert len((out / "results.jsonl").read_text().splitlines()) == 4

    with pytest.raises(ValueError, match="holds results of another setting"):
        _evaluate(manifest, out, decoder, beam_size=3)


def test_results_of_utterances_no_longer_in_the_manifest_are_set_aside(tiny, tmp_path):
    """A manifest rebuilt with other utterances (as a corpus builder may): the summary counts the manifest's
    utterances only; the old rows are kept in results.stale.jsonl, not counted, not lost."""
    model, processor = tiny
    manifest, out = _manifest(tmp_path), tmp_path / "out"
    decoder = CountingDecoder(model, processor)
    _evaluate(manifest, out, decoder)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[0] = {**rows[0], "id": "u9", "audio": str(write_wav(tmp_path / "9.wav", 1.5))}  # u0 replaced by u9
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    CountingDecoder.decoded = 0
    summary = _evaluate(manifest, out, decoder)
    assert CountingDecoder.decoded == 1  # only the new utterance
    ids = [json.loads(line)["id"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(ids) == ["u1", "u2", "u3", "u9"] and summary["overall"]["utterances"] == 4
    assert [json.loads(line)["id"] for line in (out / "results.stale.jsonl").read_text().splitlines()] == ["u0"]


@pytest.mark.slow
def test_cli_eval_on_real_speech(speech, tmp_path, capsys):
    manifest = write_manifest(tmp_path / "m.jsonl", [u for u in speech if u.language == "en"])
    out = tmp_path / "eval"
    assert main(["eval", "--model", "bundled:base", "--data", str(manifest), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["languages"]["en"]["utterances"] == 4
    assert summary["languages"]["en"]["wer"]["value"] < 25.0
    assert "| en |" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["eval", "--model", "bundled:base", "--data", str(tmp_path / "none.jsonl"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "manifest not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])


def test_clip_failing_mid_run_is_reported_not_fatal(tiny, tmp_path, monkeypatch):
    import distilwhisper.evaluate as ev
    from distilwhisper.audio import AudioError

    model, processor = tiny
    manifest, out = _manifest(tmp_path), tmp_path / "out"
    real_load = ev.load_audio

    def flaky(path):
        if path.endswith("2.wav"):
            raise AudioError(f"{path}: unreadable audio (simulated)")
        return real_load(path)

    monkeypatch.setattr(ev, "load_audio", flaky)
    summary = _evaluate(manifest, out, CountingDecoder(model, processor))
    assert summary["overall"]["utterances"] == 3
    assert "u2: " in (out / "skipped.txt").read_text() and "simulated" in (out / "skipped.txt").read_text()


def test_translate_task_scores_bleu_and_chrf_against_the_english_line(tiny, tmp_path):
    """--task translate decodes with the <|translate|> prompt and scores corpus BLEU/chrF (sacrebleu's, from summed
    per-sentence statistics, so they equal sacrebleu's corpus scores); lines without an English reference are
    reported, and a resumed run must keep the task."""
    from sacrebleu.metrics import BLEU, CHRF

    from distilwhisper.evaluate import EvalConfig, run_eval
    from distilwhisper.results import corpus_translation, read_results, translation_score, translation_stats

    model, processor = tiny
    rows = [{"id": f"u{i}", "audio": str(write_wav(tmp_path / f"{i}.wav", 1.0 + i)), "text": "dobrý den",
             "language": "cs", "translation_en": "good day" if i else ""} for i in range(3)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model.save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    config = EvalConfig(model=str(tmp_path / "tiny"), data=str(manifest), out=str(tmp_path / "out"),
                        task="translate")
    summary = run_eval(config, progress=False)
    assert summary["languages"]["cs"]["utterances"] == 2 and "bleu" in summary["overall"]
    assert "m.jsonl:id u0: no translation_en" in (tmp_path / "out" / "skipped.txt").read_text()
    assert "BLEU" in (tmp_path / "out" / "summary.md").read_text()
    scored = read_results(tmp_path / "out" / "results.jsonl")
    hyps, refs = [r["hypothesis"] for r in scored], [r["reference"] for r in scored]
    assert translation_score(scored, "chrf") == pytest.approx(CHRF().corpus_score(hyps, [refs]).score)
    pairs = [("the cat sat on the mat", "the cat is on the mat"), ("hello there", "hello there friend")]
    made = [translation_stats(ref, hyp) for hyp, ref in pairs]
    expected = BLEU().corpus_score([h for h, _ in pairs], [[r for _, r in pairs]]).score
    assert translation_score(made, "bleu") == pytest.approx(expected)
    rate = corpus_translation(made * 10, "bleu")
    assert rate.low <= rate.value <= rate.high
    with pytest.raises(ValueError, match="holds results of another setting"):
        run_eval(EvalConfig(model=config.model, data=config.data, out=config.out), progress=False)
    with pytest.raises(ValueError, match="English-only"):
        from distilwhisper.decoding import prompt_tokens
        from transformers import GenerationConfig

        prompt_tokens(GenerationConfig(decoder_start_token_id=1), "en", "translate")


def test_eval_decodes_again_when_the_model_at_its_path_was_replaced(tiny, tmp_path, capsys):
    """Results resume by the model's path; a model retrained or replaced at that path has other weights, so its
    results are decoded again (and said so) instead of being reused, while an unchanged model reuses them."""
    from distilwhisper.evaluate import EvalConfig, run_eval
    from distilwhisper.results import read_results

    model, processor = tiny
    manifest = tiny_on_disk(tiny, tmp_path, per_language=2)
    config = EvalConfig(model=str(tmp_path / "tiny"), data=str(manifest), out=str(tmp_path / "out"))
    results = tmp_path / "out" / "results.jsonl"

    def poison_and_rerun() -> list[dict]:
        rows = read_results(results)
        results.write_text("".join(json.dumps({**r, "hypothesis": "STALE"}) + "\n" for r in rows))
        run_eval(config, progress=False)
        return read_results(results)

    run_eval(config, progress=False)
    record = read_json(tmp_path / "out" / "weights.json")
    assert all(r["hypothesis"] == "STALE" for r in poison_and_rerun())  # same weights: reused, not decoded
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.proj_out.weight.mul_(0.5)
    changed.save_pretrained(tmp_path / "tiny")  # as if retrained in place
    capsys.readouterr()
    redone = poison_and_rerun()
    assert len(redone) == 4 and all(r["hypothesis"] != "STALE" for r in redone)
    assert "the model's weights changed since these results were decoded" in capsys.readouterr().out
    assert read_json(tmp_path / "out" / "weights.json") != record


def test_local_weights_fingerprint_covers_what_a_run_folder_kept(tmp_path):
    from distilwhisper.runs import local_weights_fingerprint

    assert local_weights_fingerprint("bundled:base", None) is None  # fixed by its name
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"method": "distilwhisper", "student": "bundled:base"}))
    (run / "best" / "experts.safetensors").write_bytes(b"a")
    (run / "metrics.jsonl").write_text("{}\n")
    first = local_weights_fingerprint(str(run))
    (run / "metrics.jsonl").write_text("{}\n{}\n")  # training logs are not weights
    assert local_weights_fingerprint(str(run)) == first
    (run / "best" / "experts.safetensors").write_bytes(b"b")
    assert local_weights_fingerprint(str(run)) != first
    assert local_weights_fingerprint("bundled:base", str(run / "best")) not in (None, first)
