"""Fish Fillets NG (Debian `fillets-ng-data` + `fillets-ng-data-<lang>`, GPL) -> manifest: acted dialogue, the only
transcribed human speech in Czech that installs offline, with the English line each utterance translates.

Layout (`/usr/share/games/fillets-ng`): `script/<level>/dialogs_<lang>.lua` holds, per line,
`dialogId("<id>", "<font>", "<English text>")` followed by `dialogStr("<translation>")` (Lua strings: escaped
quotes and backslashes, a call may span lines); the voice is `sound/<level>/<lang>/<id>.ogg`.  The font names the
character: `font_small` is the small fish (a female voice), `font_big` the big fish (a male voice), every other
font a minor character (gender unknown).  Splits are by level (scene), so train, dev and test never share one;
minor characters form a speaker-held-out test set of their own.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from distilwhisper.audio import MAX_SECONDS, AudioError, audio_duration
from distilwhisper.data.manifest import Utterance
from distilwhisper.languages import check as check_language

ROOT = Path("/usr/share/games/fillets-ng")
SCENE = "level"  # the manifest column naming a line's level (scene): the unit splits, and scene bootstraps, keep whole
MAIN_CHARACTERS = {"font_small": ("small-fish", "female"), "font_big": ("big-fish", "male")}
MAIN_DOMAIN, MINOR_DOMAIN = "dialogue", "held-out-characters"
DEV_SHARE, TEST_SHARE = 0.1, 0.2  # the shares of levels whose main-voice lines are dev and test
_PLACEHOLDER = re.compile(r"%\d")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


class FilletsError(ValueError):
    """The game data is missing or a script cannot be read; the message names the file and line."""


@dataclass
class DialogLine:
    """One line of a level's dialogue script."""

    id: str
    font: str
    english: str
    text: str | None  # the translation; None when the script has no dialogStr for it
    level: str
    script: Path
    line: int


def _tokens(source: str, path: Path) -> Iterator[tuple[str, str, int]]:
    """(kind, value, line) of a Lua source: `str` (unescaped value), `name`, or `punct`; comments dropped."""
    i, line = 0, 1
    while i < len(source):
        ch = source[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch.isspace():
            i += 1
        elif source.startswith("--", i):
            i = source.find("\n", i) if "\n" in source[i:] else len(source)
        elif ch in "\"'":
            start_line, out, i = line, [], i + 1
            while i < len(source) and source[i] != ch:
                if source[i] == "\\" and i + 1 < len(source):
                    out.append(_ESCAPES.get(source[i + 1], source[i + 1]))
                    i += 2
                    continue
                line += source[i] == "\n"
                out.append(source[i])
                i += 1
            if i >= len(source):
                raise FilletsError(f"{path}:{start_line}: unterminated string")
            yield "str", "".join(out), start_line
            i += 1
        elif ch.isalpha() or ch == "_":
            match = re.match(r"\w+", source[i:])
            yield "name", match.group(), line
            i += match.end()
        else:
            width = 2 if source.startswith("..", i) else 1
            yield "punct", source[i:i + width], line
            i += width


def _call(tokens: Iterator[tuple[str, str, int]], where: str) -> list[str]:
    """The string arguments of a call after its name (`..` concatenations joined)."""
    kind, value, _ = next(tokens, ("end", "", 0))
    if (kind, value) != ("punct", "("):
        raise FilletsError(f"{where}: expected '(' after the function name")
    args, current = [], None
    for kind, value, _ in tokens:
        if kind == "str":
            current = value if current is None else current + value
        elif (kind, value) == ("punct", ".."):
            continue
        elif kind == "punct" and value in ",)":
            if current is not None:
                args.append(current)
            current = None
            if value == ")":
                return args
        else:
            raise FilletsError(f"{where}: expected a string argument, found {value!r}")
    raise FilletsError(f"{where}: unterminated call")


def parse_dialogs(path: Path, level: str) -> list[DialogLine]:
    """Every `dialogId` of a script with the `dialogStr` that follows it (None where it has none)."""
    tokens = _tokens(path.read_text(encoding="utf-8"), path)
    lines: list[DialogLine] = []
    for kind, value, line in tokens:
        where = f"{path}:{line}"
        if kind != "name" or value not in ("dialogId", "dialogStr"):
            raise FilletsError(f"{where}: expected dialogId(...) or dialogStr(...), found {value!r}")
        args = _call(tokens, where)
        if value == "dialogId":
            if len(args) != 3:
                raise FilletsError(f"{where}: dialogId takes (id, font, English text), got {len(args)} argument(s)")
            lines.append(DialogLine(args[0], args[1], args[2], None, level, path, line))
        elif not lines or lines[-1].text is not None or len(args) != 1:
            raise FilletsError(f"{where}: dialogStr without the dialogId it translates")
        else:
            lines[-1].text = args[0]
    return lines


def split_levels(levels: list[str], seed: int, dev: float, test: float) -> dict[str, str]:
    """Level -> split: a seeded shuffle, `test` and `dev` shares of the levels (at least one each), train the rest."""
    order = sorted(levels)
    random.Random(seed).shuffle(order)
    n_test = max(1, round(test * len(order)))
    n_dev = max(1, round(dev * len(order)))
    if n_test + n_dev >= len(order):
        raise FilletsError(f"{len(order)} levels cannot hold {n_test} test and {n_dev} dev levels and a train set")
    return {lvl: "test" if k < n_test else "dev" if k < n_test + n_dev else "train" for k, lvl in enumerate(order)}


def load_fillets(language: str = "cs", root: str | Path = ROOT, seed: int = 0, dev: float = DEV_SHARE,
                 test: float = TEST_SHARE) -> tuple[list[Utterance], list[str]]:
    """Utterances of every voiced, transcribed line; and the lines left out ('file:line: id: why')."""
    language = check_language(language)
    root = Path(root)
    scripts = sorted((root / "script").glob(f"*/dialogs_{language}.lua"))
    if not scripts:
        raise FilletsError(f"{root}: no script/*/dialogs_{language}.lua (install fillets-ng-data and "
                           f"fillets-ng-data-{language}: apt-get install fillets-ng-data fillets-ng-data-{language})")
    lines = [line for script in scripts for line in parse_dialogs(script, script.parent.name)]
    splits = split_levels(sorted({line.level for line in lines}), seed, dev, test)
    utterances, skipped = [], []
    for line in lines:
        audio = root / "sound" / line.level / language / f"{line.id}.ogg"
        problem = _problem(line, audio)
        if problem:
            skipped.append(f"{line.script}:{line.line}: {line.id}: {problem}")
            continue
        character, gender = MAIN_CHARACTERS.get(line.font, (line.font.removeprefix("font_"), ""))
        main = line.font in MAIN_CHARACTERS
        utterances.append(Utterance(
            id=f"fillets-{language}-{line.level}-{line.id}", audio=str(audio), text=line.text.strip(),
            language=language, speaker=character, gender=gender, split=splits[line.level] if main else "test",
            domain=MAIN_DOMAIN if main else MINOR_DOMAIN, source="fillets",
            extra={"translation_en": line.english.strip(), SCENE: line.level}))
    return utterances, skipped


def _problem(line: DialogLine, audio: Path) -> str | None:
    if line.text is None:
        return "no translation (dialogStr) in the script"
    if not line.text.strip():
        return "empty transcript"
    if _PLACEHOLDER.search(line.text):  # the game fills these in (a number, a repeated syllable): not what was said
        return f"transcript holds a format placeholder ({_PLACEHOLDER.search(line.text).group()})"
    if not audio.is_file():
        return f"no recording ({audio})"
    try:
        seconds = audio_duration(audio)
    except AudioError as err:
        return f"unreadable recording: {err}"
    if seconds <= 0:
        return "empty recording"
    if seconds > MAX_SECONDS:
        return f"recording of {seconds:.1f} s is over Whisper's {MAX_SECONDS:.0f} s window"
    return None
