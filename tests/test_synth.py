"""Offline TTS corpus: sentence filtering, disjoint splits, Festival encodings, metadata, resume, errors."""

from __future__ import annotations

import json

import pytest

from distilwhisper.cli import main
from distilwhisper.data import sentences, synth, tts
from distilwhisper.data.manifest import read_manifest
from distilwhisper.data.tts import IN_DOMAIN, OUT_OF_DOMAIN, TTSError, Voice


def test_sentence_filter():
    keep = sentences.keep
    assert keep("Obriu el menú de l'aplicació a la barra superior.", "ca")
    assert not keep("Massa curt.", "ca")  # under 5 words
    assert not keep("Premeu la tecla 5 per a continuar amb la instal·lació.", "ca")  # digit
    assert not keep("Visiteu https://gnome.org per a obtenir més informació ara.", "ca")  # URL
    assert not keep("Connecteu-vos a la VPN de la vostra empresa ara mateix.", "ca")  # acronym
    assert not keep("Open the Activities overview and start typing Settings.", "ca")  # left in English
    assert not keep("una frase sense majúscula inicial que no acaba bé", "ca")


def test_sentences_are_natural_and_unique():
    ca = sentences.load_sentences("ca")
    assert len(ca) > 1000 and len(set(ca)) == len(ca)
    assert all(5 <= len(s.split()) <= 20 for s in ca)
    with pytest.raises(FileNotFoundError, match="gnome-user-docs"):
        sentences.load_sentences("haw")


def test_plan_is_deterministic_with_disjoint_splits(tmp_path):
    jobs = synth.plan("cs", 60, seed=3, out_dir=tmp_path)
    again = synth.plan("cs", 60, seed=3, out_dir=tmp_path)
    assert [(j.utterance.text, j.voice) for j in jobs] == [(j.utterance.text, j.voice) for j in again]
    assert [j.utterance.text for j in synth.plan("cs", 60, seed=4, out_dir=tmp_path)] != [j.utterance.text
                                                                                         for j in jobs]
    by_split: dict[tuple[str, str], set[str]] = {}
    for j in jobs:
        by_split.setdefault((j.utterance.split, j.utterance.domain), set()).add(j.utterance.text)
    assert {k: len(v) for k, v in by_split.items()} == {("train", IN_DOMAIN): 30, ("dev", IN_DOMAIN): 6,
                                                       ("test", IN_DOMAIN): 12, ("test", OUT_OF_DOMAIN): 12}
    sets = list(by_split.values())
    assert all(a.isdisjoint(b) for i, a in enumerate(sets) for b in sets[i + 1:])
    in_domain = {j.voice.speaker for j in jobs if j.utterance.domain == IN_DOMAIN}
    ood = {j.voice.speaker for j in jobs if j.utterance.domain == OUT_OF_DOMAIN}
    assert in_domain.isdisjoint(ood)
    assert {j.utterance.gender for j in jobs if j.utterance.domain == IN_DOMAIN} == {"female", "male"}
    assert any(j.utterance.age == "child" for j in jobs)  # the Czech child voice (krb)


def test_more_voices_read_the_same_training_sentences_and_stay_out_of_the_out_of_domain_set(tmp_path):
    plain = synth.plan("cs", 60, seed=3, out_dir=tmp_path)
    more = synth.plan("cs", 60, seed=3, out_dir=tmp_path, more_voices=("f2", "m3"))
    assert [j.utterance.text for j in more] == [j.utterance.text for j in plain]
    train = {j.voice.speaker for j in more if j.utterance.split == "train"}
    assert {"espeak-ng:cs+f2", "espeak-ng:cs+m3"} < train
    assert train - {"espeak-ng:cs+f2", "espeak-ng:cs+m3"} == {j.voice.speaker for j in plain
                                                             if j.utterance.split == "train"}
    assert [j.voice for j in more if j.utterance.domain == OUT_OF_DOMAIN] == [
        j.voice for j in plain if j.utterance.domain == OUT_OF_DOMAIN]
    added = next(j for j in more if j.voice.speaker == "espeak-ng:cs+m3")
    assert added.utterance.gender == "male" and added.utterance.domain == IN_DOMAIN
    audio = tts.synthesize(added.voice, added.utterance.text)  # the variant exists in espeak-ng
    assert len(audio) > 16000 * 0.5


def test_an_unknown_voice_variant_is_refused_not_read_in_the_default_voice(tmp_path):
    """espeak-ng reads `cs+nosuch` in its default voice without complaint: the plan refuses the name, and says
    which variants are installed; the gender of a known one is espeak-ng's own (f5 female, m7 male)."""
    with pytest.raises(TTSError, match=r"no voice variant nosuch \(installed: .*f2.*m7"):
        synth.plan("cs", 60, seed=3, out_dir=tmp_path, more_voices=("f2", "nosuch"))
    assert tts.espeak_variants()["f5"] == "female" and tts.espeak_variants()["m7"] == "male"


def test_festival_needs_8bit_text(tmp_path):
    """Czech diacritics reach Festival in ISO-8859-2; an unrepresentable character is a clear error."""
    dita = next(v for v in tts.voices_for("cs") if v.name == "czech_dita")
    audio = tts.synthesize(dita, "Příliš žluťoučký kůň úpěl ďábelské ódy.")
    assert 1.5 < len(audio) / 16000 < 8
    dashed = tts.synthesize(dita, "Příliš žluťoučký kůň – úpěl ďábelské ódy.")  # en dash
    assert 1.5 < len(dashed) / 16000 < 8
    with pytest.raises(TTSError, match="iso-8859-2"):
        tts.synthesize(dita, "Ahoj ☃ světe.")


def test_missing_engine_error_lists_available(monkeypatch):
    monkeypatch.setattr(tts.shutil, "which", lambda name: None)
    monkeypatch.setattr(synth, "voices_for", tts.voices_for)
    with pytest.raises(TTSError, match="no TTS voice installed for 'ca'"):
        synth.plan("ca", 10, 0)


def test_conditions(tmp_path):
    voice = Voice("espeak-ng", "ca+m1", "ca", "male", "adult", IN_DOMAIN)
    clean = tts.synthesize(voice, "Bon dia a tothom, com esteu avui?")
    noisy = tts.apply_condition(clean, "noise:10", seed=1)
    snr = 10 * __import__("math").log10((clean ** 2).mean() / ((noisy - clean) ** 2).mean())
    assert abs(snr - 10) < 0.5
    faster = tts.apply_condition(clean, "speed:1.25", seed=1)
    assert abs(len(faster) / len(clean) - 0.8) < 0.05
    with pytest.raises(ValueError, match="unknown condition"):
        tts.apply_condition(clean, "echo:3", seed=1)


def test_synth_cli_resume_and_metadata(tmp_path, capsys):
    out = tmp_path / "corpus"
    args = ["data", "synth", "--languages", "ca,cs", "--per-language", "10", "--out", str(out),
            "--conditions", "clean,noise:15"]
    assert main(args) == 0
    utts, problems = read_manifest(out / "manifest.jsonl")
    assert problems == [] and len(utts) == 20
    assert {u.extra["condition"] for u in utts} == {"clean", "noise:15"}
    assert {(u.language, u.domain) for u in utts} == {(lang, d) for lang in ("ca", "cs")
                                                      for d in (IN_DOMAIN, OUT_OF_DOMAIN)}
    assert all(u.speaker and u.gender in ("female", "male") and u.age for u in utts)
    assert "| ca | train | in-domain |" in capsys.readouterr().out
    # resume: remove one file, rerun: only that one is made again, the others keep their timestamps
    files = sorted((out / "audio").rglob("*.wav"))
    stamps = {f: f.stat().st_mtime_ns for f in files}
    files[0].unlink()
    assert main(args) == 0
    assert files[0].exists()
    assert all(f.stat().st_mtime_ns == stamps[f] for f in files[1:])
    assert json.loads((out / "manifest.jsonl").read_text().splitlines()[0])["audio"].startswith("audio/")


@pytest.mark.slow
def test_festival_catalan_is_intelligible(bundled, tmp_path):
    """whisper-base understands the Festival Catalan voice: the audio is speech, not garbage."""
    from distilwhisper.evaluate import EvalConfig, run_eval

    path = synth.synth_corpus(["ca"], 10, tmp_path / "c", seed=1, progress=False)
    manifest = tmp_path / "ona.jsonl"
    rows = [line for line in path.read_text().splitlines() if "festival" in line]
    manifest.write_text("\n".join(rows[:4]).replace('"audio": "audio/', f'"audio": "{tmp_path}/c/audio/') + "\n")
    summary = run_eval(EvalConfig(model="bundled:base", data=str(manifest), out=str(tmp_path / "eval")),
                       progress=False)
    assert summary["languages"]["ca"]["wer"]["value"] < 50.0


def test_fixed_test_sets_grow_only_train():
    """With `test`, a larger corpus keeps both test sets at that size; dev is a tenth of the rest, at most `test`."""
    assert synth.split_counts(60) == [30, 6, 12, 12]
    assert synth.split_counts(200, test=20) == [144, 16, 20, 20]
    assert synth.split_counts(400, test=20) == [340, 20, 20, 20]
    with pytest.raises(ValueError, match="cannot hold two test sets of 20"):
        synth.split_counts(40, test=20)
