"""The Fish Fillets importer: Lua scripts parsed exactly (escaped quotes, multi-line calls, `--` inside strings,
comments), every left-out line reported with file:line and reason, splits by level, minor characters held out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from distilwhisper.cli import main
from distilwhisper.data.fillets import FilletsError, load_fillets, parse_dialogs, split_levels

SCRIPT = r'''-- a comment with dialogStr("not a call")
dialogId("let-m-divna", "font_small", "What kind of strange ship is that?")
dialogStr("Co je to za divnou loď?")

dialogId("v-hraje", "font_big", "Somebody is playing -- the cars are moved.")
dialogStr(
"Asi si s námi někdo hraje -- auta se posouvají. Řekl \"ahoj\" a C:\\WINDOWS.")

dialogId("let-x-papousek", "font_parrot", "Polly wants a cracker.")
dialogStr("Papoušek chce " .. "sušenku.")

dialogId("let-m-prazdna", "font_small", "Empty.")
dialogStr("")

dialogId("let-v-bezzvuku", "font_big", "No recording of this one.")
dialogStr("Tohle nikdo nenamluvil.")

dialogId("let-x-krik", "font_parrot", "A%1.")
dialogStr("A%1.")

dialogId("let-m-bezprekladu", "font_small", "This line was never translated.")
'''


def _ogg(path: Path, seconds: float = 1.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 22050)) / 22050
    sf.write(str(path), (0.2 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 22050, format="OGG",
             subtype="VORBIS")


@pytest.fixture
def game(tmp_path) -> Path:
    """The package layout: script/<level>/dialogs_cs.lua and sound/<level>/cs/<id>.ogg, for five levels."""
    root = tmp_path / "fillets-ng"
    for level in ("airplane", "barrel", "cabin1", "duckie", "elk"):
        (root / "script" / level).mkdir(parents=True)
        (root / "script" / level / "dialogs_cs.lua").write_text(SCRIPT, encoding="utf-8")
        for uid in ("let-m-divna", "v-hraje", "let-x-papousek", "let-m-prazdna", "let-x-krik", "let-m-bezprekladu"):
            _ogg(root / "sound" / level / "cs" / f"{uid}.ogg")
    (root / "sound" / "elk" / "cs" / "let-m-divna.ogg").write_bytes(b"not audio")
    return root


def test_lua_strings_are_parsed_exactly(game):
    lines = parse_dialogs(game / "script" / "airplane" / "dialogs_cs.lua", "airplane")
    assert [line.id for line in lines] == ["let-m-divna", "v-hraje", "let-x-papousek", "let-m-prazdna",
                                           "let-v-bezzvuku", "let-x-krik", "let-m-bezprekladu"]
    assert lines[1].text == 'Asi si s námi někdo hraje -- auta se posouvají. Řekl "ahoj" a C:\\WINDOWS.'
    assert lines[1].english == "Somebody is playing -- the cars are moved." and lines[1].line == 5
    assert lines[2].text == "Papoušek chce sušenku."
    assert lines[6].text is None


def test_import_reports_every_left_out_line_and_splits_by_level(game):
    utterances, skipped = load_fillets("cs", game, dev=0.2, test=0.2)
    reasons = {s.split(": ", 2)[1]: s.split(": ", 2)[2] for s in skipped if "airplane" in s}
    assert reasons == {"let-m-prazdna": "empty transcript", "let-v-bezzvuku": reasons["let-v-bezzvuku"],
                       "let-x-krik": "transcript holds a format placeholder (%1)",
                       "let-m-bezprekladu": "no translation (dialogStr) in the script"}
    assert reasons["let-v-bezzvuku"].startswith("no recording")
    assert any(s.startswith(f"{game}/script/elk/dialogs_cs.lua:2: let-m-divna: unreadable recording") for s in skipped)
    by_id = {u.id: u for u in utterances}
    fish = by_id["fillets-cs-airplane-let-m-divna"]
    assert (fish.speaker, fish.gender, fish.domain, fish.extra["translation_en"]) == (
        "small-fish", "female", "dialogue", "What kind of strange ship is that?")
    parrot = by_id["fillets-cs-airplane-let-x-papousek"]
    assert (parrot.speaker, parrot.gender, parrot.domain, parrot.split) == (
        "parrot", "", "held-out-characters", "test")
    main_voices = [u for u in utterances if u.domain == "dialogue"]
    for level in {u.extra["level"] for u in main_voices}:  # one split per scene
        assert len({u.split for u in main_voices if u.extra["level"] == level}) == 1
    assert {u.split for u in main_voices} == {"train", "dev", "test"}
    assert split_levels(["a", "b", "c", "d", "e"], 0, 0.2, 0.2) == split_levels(["e", "d", "c", "b", "a"], 0, 0.2, 0.2)


def test_bad_scripts_and_missing_data_are_named(game, tmp_path, capsys):
    (game / "script" / "barrel" / "dialogs_cs.lua").write_text('dialogId("x", "font_big", "unterminated)\n')
    with pytest.raises(FilletsError, match=r"barrel/dialogs_cs\.lua:1: unterminated string"):
        load_fillets("cs", game)
    (game / "script" / "barrel" / "dialogs_cs.lua").write_text('dialogStr("orphan")\n')
    with pytest.raises(FilletsError, match=r"barrel/dialogs_cs\.lua:1: dialogStr without the dialogId"):
        load_fillets("cs", game)
    assert main(["data", "fillets", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "m.jsonl")]) == 2
    assert "apt-get install fillets-ng-data fillets-ng-data-cs" in capsys.readouterr().err


def test_cli_writes_a_manifest_that_validates(game, tmp_path, capsys):
    out = tmp_path / "fillets.jsonl"
    assert main(["data", "fillets", "--root", str(game), "--out", str(out), "--dev-levels", "0.2"]) == 0
    assert "skipped" in capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(r["translation_en"] and r["source"] == "fillets" for r in rows)
    assert main(["data", "validate", str(out)]) == 0


@pytest.mark.slow
def test_installed_czech_voices():
    """The Debian packages: over a thousand main-voice lines, both voices in every split, each level in one split."""
    utterances, skipped = load_fillets("cs")
    main_voices = [u for u in utterances if u.domain == "dialogue"]
    assert len(main_voices) > 1000 and len(skipped) < 300
    for split in ("train", "dev", "test"):
        assert {u.gender for u in main_voices if u.split == split} == {"female", "male"}
    assert len({u.speaker for u in utterances if u.domain == "held-out-characters"}) >= 5
