"""Manifest validation reports every bad line by number, and the loaders read the real corpus layouts."""

from __future__ import annotations

import json

import datasets
import pytest
import soundfile as sf

from distilwhisper.cli import main
from distilwhisper.data.commonvoice import load_common_voice
from distilwhisper.data.fleurs import load_fleurs
from distilwhisper.data.hf import load_hf_dataset
from distilwhisper.data.manifest import ManifestError, Utterance, read_manifest, validate_manifest, write_manifest
from conftest import tone, write_wav


def _line(**kw):
    row = {"id": "u", "audio": "a.wav", "text": "hola", "language": "es"}
    row.update(kw)
    return json.dumps(row)


def test_every_bad_line_reported_with_its_number(tmp_path):
    write_wav(tmp_path / "a.wav", 1.0)
    write_wav(tmp_path / "long.wav", 31.0)
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    lines = [
        _line(id="ok1"),
        _line(id="missing", audio="nope.wav"),
        _line(id="empty", text="  "),
        _line(id="lang", language="xx"),
        _line(id="long", audio="long.wav"),
        _line(id="bad", audio="bad.wav"),
        "{not json",
        json.dumps({"id": "nofields"}),
        _line(id="ok1"),
        _line(id="gender", gender="w"),
        _line(id="ok2"),
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    good, problems = read_manifest(manifest)
    assert [u.id for u in good] == ["ok1", "ok2"]
    by_line = dict(problems)
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert "audio file not found" in by_line[2]
    assert "empty text" in by_line[3]
    assert "unknown language code 'xx'" in by_line[4]
    assert "longer than Whisper's 30 s window" in by_line[5]
    assert "unreadable audio" in by_line[6]
    assert "invalid line" in by_line[7]
    assert "missing field(s) audio, text, language" in by_line[8]
    assert "duplicate id 'ok1' (first on line 1)" in by_line[9]
    assert "gender 'w'" in by_line[10]
    with pytest.raises(ManifestError, match=r"m.jsonl:4: lang: unknown language"):
        validate_manifest(manifest)
    assert main(["data", "validate", str(manifest)]) == 1


def test_write_then_read_round_trip(tmp_path):
    audio = write_wav(tmp_path / "clips" / "a.wav", 1.0)
    utt = Utterance(id="x", audio=str(audio), text="bon dia", language="ca", speaker="s1", gender="female",
                    age="twenties", split="test", domain="cv", source="t", extra={"up_votes": "3"})
    path = write_manifest(tmp_path / "m.jsonl", [utt])
    assert json.loads(path.read_text())["audio"] == "clips/a.wav"
    (back,), problems = read_manifest(path)
    assert problems == [] and back == utt


def test_manifest_read_through_a_relative_path_gives_absolute_audio(tmp_path, monkeypatch):
    """A manifest named relative to the cwd still yields usable paths after the cwd changes or the utterances are
    rewritten elsewhere (e.g. combined into another folder's manifest)."""
    write_wav(tmp_path / "corpus" / "clips" / "a.wav", 1.0)
    (tmp_path / "corpus" / "m.jsonl").write_text(json.dumps({"id": "a", "audio": "clips/a.wav", "text": "hola",
                                                             "language": "es"}) + "\n")
    monkeypatch.chdir(tmp_path)
    (utt,), _ = read_manifest("corpus/m.jsonl")
    monkeypatch.chdir(tmp_path / "corpus")
    combined = write_manifest(tmp_path / "elsewhere" / "all.jsonl", [utt], relative=False)
    (back,), problems = read_manifest(combined)
    assert problems == [] and back.audio == str(tmp_path / "corpus" / "clips" / "a.wav")


def _mp3(path, seconds=1.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, 48000), 48000, format="MP3")


def test_common_voice_folder(tmp_path):
    cv = tmp_path / "cv-corpus-13.0" / "ca"
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment\n"
    for split, rows in {"train": [("c1", "a.mp3", "Bon dia a tothom.", "twenties", "female")],
                        "dev": [("c2", "b.mp3", "Com estàs?", "fourties", "male_masculine")],
                        "test": [("c3", "c.mp3", "Adéu.", "", "female_feminine"),
                                 ("c4", "gone.mp3", "No hi és.", "teens", "male")]}.items():
        text = header + "".join(f"{c}\t{p}\t{s}\t2\t0\t{a}\t{g}\t\t\tca\t\n" for c, p, s, a, g in rows)
        (cv / f"{split}.tsv").parent.mkdir(parents=True, exist_ok=True)
        (cv / f"{split}.tsv").write_text(text)
    for name in ("a", "b", "c"):
        _mp3(cv / "clips" / f"{name}.mp3")
    utts, skipped, notes = load_common_voice(cv)
    assert notes == []
    assert [(u.split, u.gender, u.age, u.language) for u in utts] == [
        ("train", "female", "twenties", "ca"), ("dev", "male", "fourties", "ca"), ("test", "female", "", "ca")]
    assert utts[1].text == "Com estàs?" and utts[0].speaker == "c1"
    assert len(skipped) == 1 and "test.tsv:3: missing clip" in skipped[0]
    out = tmp_path / "cv.jsonl"
    assert main(["data", "commonvoice", str(cv), "--out", str(out)]) == 0
    good, problems = read_manifest(out)
    assert len(good) == 3 and problems == []


def test_common_voice_training_subset_by_votes(tmp_path, capsys):
    """The paper's subsets: the most up-voted training clips (ties: fewer down-votes, then file order); dev and
    test whole; what the cap dropped is said."""
    cv = tmp_path / "cv" / "cs"
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment\n"
    votes = [(2, 0), (5, 1), (5, 0), (0, 0), (3, 2)]
    (cv / "clips").mkdir(parents=True)
    for split, n in (("train", 5), ("dev", 3), ("test", 3)):
        rows = "".join(f"c{i}\t{split}{i}.mp3\tvěta {i}\t{votes[i % 5][0]}\t{votes[i % 5][1]}\t\t\t\t\tcs\t\n"
                       for i in range(n))
        (cv / f"{split}.tsv").write_text(header + rows)
        for i in range(n):
            _mp3(cv / "clips" / f"{split}{i}.mp3", 0.2)
    utts, _, notes = load_common_voice(cv, max_train=3)
    assert [u.id for u in utts if u.split == "train"] == ["cv-cs-train2", "cv-cs-train1", "cv-cs-train4"]
    assert len([u for u in utts if u.split != "train"]) == 6  # dev and test whole
    assert notes == ["train: kept 3 of 5 usable rows (most up-voted, then fewest down-votes); dropped 2"]
    utts, _, _ = load_common_voice(cv, max_train=3, by_votes=False, max_eval=1)
    assert [u.id for u in utts] == ["cv-cs-train0", "cv-cs-train1", "cv-cs-train2", "cv-cs-dev0", "cv-cs-test0"]
    assert main(["data", "commonvoice", str(cv), "--out", str(tmp_path / "m.jsonl"), "--max-train", "2"]) == 0
    assert "train: kept 2 of 5 usable rows (most up-voted" in capsys.readouterr().out


def test_fleurs_folder(tmp_path):
    folder = tmp_path / "fleurs" / "cs_cz"
    write_wav(folder / "audio" / "test" / "1.wav", 1.0)
    write_wav(folder / "audio" / "test" / "2.wav", 1.5)
    (folder / "test.tsv").write_text(
        "100\t1.wav\tDobrý den, světe.\tdobrý den světe\td o b r ý |\t16000\tFEMALE\n"
        "101\t2.wav\tNa shledanou.\tna shledanou\tn a |\t24000\tMALE\n")
    utts, skipped = load_fleurs(folder)
    assert [(u.language, u.gender, u.text) for u in utts] == [("cs", "female", "Dobrý den, světe."),
                                                             ("cs", "male", "Na shledanou.")]
    assert skipped == [] and utts[0].domain == "fleurs"
    (folder / "dev.tsv").write_text("1\t2\n")
    with pytest.raises(ValueError, match=r"dev.tsv:1: expected 7 tab-separated columns"):
        load_fleurs(folder, splits=("dev",))


def test_hf_dataset_from_disk(tmp_path):
    paths = [str(write_wav(tmp_path / "src" / f"{i}.wav", 1.0 + i)) for i in range(2)]
    ds = datasets.Dataset.from_dict({"audio": paths, "sentence": ["Hola.", "Adiós."],
                                     "gender": ["female", "male"], "client_id": ["a", "b"]})
    ds = ds.cast_column("audio", datasets.Audio())
    ds.save_to_disk(str(tmp_path / "ds"))
    utts = load_hf_dataset(str(tmp_path / "ds"), tmp_path / "out", "es")
    assert [(u.text, u.gender, u.speaker) for u in utts] == [("Hola.", "female", "a"), ("Adiós.", "male", "b")]
    durations = [len(sf.read(u.audio)[0]) for u in utts]
    assert durations == [16000, 32000]
    with pytest.raises(ValueError, match="no text column"):
        load_hf_dataset(str(tmp_path / "ds"), tmp_path / "out", "es", text_column="nope")


def test_asterisk_speaker_and_gender_come_from_the_installed_voice(tmp_path, monkeypatch):
    """Debian releases ship other voices (it: a male voice, Carlo, in 1.6.1): the folder `<lang>/` links to names
    speaker and gender, not a table written for another release."""
    from distilwhisper.data import asterisk

    for voice in ("it_IT_m_Carlo", "fr_CA_f_June", "xx"):
        (tmp_path / voice).mkdir()
        (tmp_path / voice / "hello.wav").write_bytes(b"")
    (tmp_path / "it").symlink_to(tmp_path / "it_IT_m_Carlo")
    (tmp_path / "fr").symlink_to(tmp_path / "fr_CA_f_June")
    (tmp_path / "ru").symlink_to(tmp_path / "xx")
    monkeypatch.setattr(asterisk, "SOUNDS", tmp_path)
    assert asterisk._voice("it")[1:] == ("it_IT_m_Carlo", "male")
    assert asterisk._voice("fr")[1:] == ("fr_CA_f_June", "female")
    assert asterisk._voice("ru")[1:] == ("xx", "")  # a name that does not say: unknown, not guessed
    with pytest.raises(FileNotFoundError, match="asterisk-core-sounds-es-wav"):
        asterisk._voice("es")
