"""Every class of bad input the toolkit handles, through the command line, with the message a user gets.

Each case builds its bad input in a fresh folder, runs the command in-process and checks the exit status (2: the
command stops with one `distilwhisper: error:` line; 0: the bad item is reported and left out, the rest finishes)
and that the message names the problem.  `python tests/test_bad_inputs.py` prints the table of docs/results.md
from the same cases (the messages as they are now).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_whisper, tone, write_wav  # noqa: E402

from distilwhisper.cli import main  # noqa: E402


@dataclass
class Case:
    category: str
    bad: str  # what is wrong, in a user's words
    argv: Callable[[Path, Path], list[str]]  # (work folder, tiny model folder) -> arguments
    status: int  # 2: stops with an error; 1: `data validate` found bad lines; 0: reported and left out, or handled
    expected: str  # in the output (or skipped.txt) of the command
    decoded: tuple[str, ...] = ()  # eval: the utterances that must be in results.jsonl (the good ones)


def _manifest(root: Path, *rows: dict | str) -> str:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    (root / "m.jsonl").write_text("\n".join(lines) + "\n")
    return str(root / "m.jsonl")


def _row(root: Path, uid: str = "ok", audio: str | None = None, **kw) -> dict:
    if audio is None:
        audio = str(write_wav(root / f"{uid}.wav", 1.0))
    return {"id": uid, "audio": audio, "text": "bon dia", "language": "ca", **kw}


def _eval(root: Path, model: Path, *bad: dict | str, extra: tuple[str, ...] = ()) -> list[str]:
    data = _manifest(root, _row(root), *bad)
    return ["eval", "--model", str(model), "--data", data, "--out", str(root / "out"), *extra]


def _validate(root: Path, *bad: dict | str) -> list[str]:
    return ["data", "validate", _manifest(root, _row(root), *bad)]


def _audio(root: Path, name: str, write: Callable[[Path], None]) -> str:
    path = root / name
    write(path)
    return str(path)


def _train(root: Path, model: Path, *extra: str, yaml: str | None = None) -> list[str]:
    data = _manifest(root, _row(root))
    config = []
    if yaml is not None:
        (root / "s.yaml").write_text(yaml)
        config = ["--config", str(root / "s.yaml")]
    return ["train", "--method", "clsr-ft", "--student", str(model), "--languages", "ca", "--train", data,
            "--out", str(root / "run"), "--max-steps", "1", *config, *extra]


def _experts(root: Path, model: Path, seed: int, damage: Callable[[Path], None] = lambda folder: None,
             language: str = "ca") -> list[str]:
    """Experts for `language` saved from `model`'s architecture with random base weights of `seed` (0: the weights
    of `model` itself, i.e. experts that fit), then `damage`d; `eval` of a ca clip with them."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from distilwhisper import clsr

    torch.manual_seed(seed)
    base = (WhisperForConditionalGeneration.from_pretrained(model) if seed == 0
            else WhisperForConditionalGeneration(WhisperConfig.from_pretrained(model)))
    clsr.to_distilwhisper(base, [language])
    folder = clsr.save_experts(base, root / "experts", str(model) if seed == 0 else "another/model", [language])
    damage(folder)
    return _eval(root, model, extra=("--experts", str(folder)))


def _transcribe(root: Path, model: Path, *extra: str) -> list[str]:
    return ["transcribe", "--model", str(model), "--language", "ca", *extra, str(write_wav(root / "talk.wav", 2.0))]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _pickle_only(root: Path) -> str:
    import torch
    from transformers import WhisperConfig

    folder = root / "pickled"
    folder.mkdir()
    WhisperConfig(d_model=8, encoder_layers=1, decoder_layers=1, encoder_attention_heads=1,
                  decoder_attention_heads=1, encoder_ffn_dim=8, decoder_ffn_dim=8).save_pretrained(folder)
    torch.save({}, folder / "pytorch_model.bin")
    return str(folder)


CASES = [
    # audio
    Case("audio", "file missing", lambda r, m: _eval(r, m, _row(r, "gone", str(r / "gone.wav"))), 0,
         "audio file not found", ("ok",)),
    Case("audio", "empty file (0 bytes)", lambda r, m: _eval(r, m, _row(r, "empty", _audio(
        r, "empty.wav", lambda p: p.write_bytes(b"")))), 0, "unreadable audio", ("ok",)),
    Case("audio", "corrupt file", lambda r, m: _eval(r, m, _row(r, "junk", _audio(
        r, "junk.wav", lambda p: p.write_bytes(b"RIFF" + bytes(range(256)) * 4)))), 0, "unreadable audio", ("ok",)),
    Case("audio", "header only, no samples", lambda r, m: _eval(r, m, _row(r, "hollow", _audio(
        r, "hollow.wav", lambda p: sf.write(str(p), np.zeros(0, np.float32), 16000)))), 0, "no samples", ("ok",)),
    Case("audio", "NaN samples (float wav)", lambda r, m: _eval(r, m, _row(r, "nan", _audio(
        r, "nan.wav", lambda p: sf.write(str(p), np.where(np.arange(16000) % 7, tone(1.0), np.nan).astype(
            np.float32), 16000, subtype="FLOAT")))), 0, "samples are NaN or infinite", ("ok",)),
    Case("audio", "longer than 30 s (eval, train)", lambda r, m: _eval(r, m, _row(r, "long", str(write_wav(
        r / "long.wav", 31.0)))), 0, "longer than Whisper's 30 s window", ("ok",)),
    Case("audio", "another sample rate (44.1 kHz): resampled, not an error", lambda r, m: _eval(r, m, _row(
        r, "cd", str(write_wav(r / "cd.wav", 1.0, rate=44100)))), 0, "", ("cd", "ok")),
    # manifests
    Case("manifest", "file missing", lambda r, m: ["data", "validate", str(r / "none.jsonl")], 2,
         "manifest not found"),
    Case("manifest", "line not JSON", lambda r, m: _validate(r, "{not json"), 1, "m.jsonl:2: invalid line"),
    Case("manifest", "required field missing", lambda r, m: _validate(r, {"id": "x", "audio": "a.wav"}), 1,
         "m.jsonl:2: invalid line: missing field(s) text, language"),
    Case("manifest", "empty transcript", lambda r, m: _validate(r, _row(r, "blank", text=" ")), 1,
         "m.jsonl:2: blank: empty text"),
    Case("manifest", "unknown language code", lambda r, m: _validate(r, _row(r, "xx", language="xx")), 1,
         "m.jsonl:2: xx: unknown language code 'xx'"),
    Case("manifest", "duplicate id", lambda r, m: _validate(r, _row(r, "ok")), 1,
         "m.jsonl:2: ok: duplicate id 'ok' (first on line 1)"),
    Case("manifest", "gender value outside the vocabulary", lambda r, m: _validate(r, _row(r, "g", gender="w")),
         1, "m.jsonl:2: g: gender 'w' not one of"),
    Case("manifest", "filters leave nothing", lambda r, m: _eval(r, m, extra=("--split", "test")), 2,
         "no utterances left after filtering"),
    Case("manifest", "translate task without English references", lambda r, m: _eval(
        r, m, extra=("--task", "translate")), 2, "no utterance has a translation_en column"),
    # models
    Case("model", "unknown bundled size", lambda r, m: _eval(r, Path("bundled:huge")), 2, "bundled:huge"),
    Case("model", "folder that does not exist", lambda r, m: _eval(r, r / "nowhere"), 2, "nowhere"),
    Case("model", "folder without weights", lambda r, m: _eval(r, _folder(r / "hollow-model")), 2,
         "hollow-model"),
    Case("model", "only pickled weights (pytorch_model.bin)", lambda r, m: _eval(r, Path(_pickle_only(r))), 2,
         "--allow-pickle"),
    Case("model", "unfinished train run folder (no best/)", lambda r, m: _eval(r, _unfinished_run(r)), 2,
         "not a finished training run"),
    # experts
    Case("experts", "folder without distilwhisper_experts.json", lambda r, m: _experts(
        r, m, 0, lambda f: (f / "distilwhisper_experts.json").unlink()), 2, "not an experts directory"),
    Case("experts", "trained on other base weights", lambda r, m: _experts(r, m, 1), 2, "other base weights"),
    Case("experts", "truncated expert file", lambda r, m: _experts(r, m, 0, lambda f: _truncate(
        f / "ca.safetensors")), 2, "corrupt or truncated expert file"),
    Case("experts", "trained for another architecture", lambda r, m: _experts(r, m, 0, lambda f: _edit_json(
        f / "distilwhisper_experts.json", d_model=512)), 2, "trained for a model with d_model=512"),
    Case("experts", "no experts for the language: decoded on the shared FFNs, not an error", lambda r, m: _experts(
        r, m, 0, language="cs"), 0, "no experts for ca"),
    # configs and flags
    Case("config", "YAML setting that does not exist", lambda r, m: _train(r, m, yaml="learning_rate: 1\n"), 2,
         "unknown setting(s) learning_rate"),
    Case("config", "YAML that is not a mapping", lambda r, m: _train(r, m, yaml="- 1\n- 2\n"), 2,
         "expected a mapping of settings"),
    Case("config", "distilwhisper without a teacher", lambda r, m: _train(r, m, "--method", "distilwhisper"), 2,
         "needs --teacher"),
    Case("config", "--cache-encoder with a trainable encoder", lambda r, m: _train(r, m, "--cache-encoder"), 2,
         "--cache-encoder needs a frozen encoder"),
    Case("config", "negative --eval-every", lambda r, m: _train(r, m, "--eval-every", "-1"), 2,
         "--eval-every must be 0 or a number of steps"),
    Case("config", "training manifest with languages outside --languages", lambda r, m: _train(
        r, m, "--languages", "cs"), 2, "holds languages outside --languages"),
    Case("flag", "unknown --precision", lambda r, m: _eval(r, m, extra=("--precision", "int3")), 2,
         "invalid choice: 'int3'"),
    Case("flag", "--batch-size 0", lambda r, m: _eval(r, m, extra=("--batch-size", "0")), 2,
         "--batch-size must be at least 1"),
    Case("flag", "not a number", lambda r, m: _eval(r, m, extra=("--limit", "ten")), 2, "invalid int value"),
    Case("flag", "--expert-tasks that is not a task", lambda r, m: _eval(r, m, extra=("--expert-tasks", "summarise")),
         2, "--expert-tasks: summarise is not a task (transcribe, translate)"),
    Case("flag", "--expert-tasks for a model without experts", lambda r, m: _eval(
        r, m, extra=("--expert-tasks", "translate")), 2, "has no experts (give --experts, or a DistilWhisper"),
    Case("flag", "transcribe: CTranslate2 precision with --experts", lambda r, m: _transcribe(
        r, m, "--precision", "ct2-float32", "--experts", str(r)), 2, "CTranslate2 cannot run language experts"),
    Case("flag", "transcribe: --no-condition without --sequential", lambda r, m: _transcribe(
        r, m, "--no-condition"), 2, "--no-condition applies to --sequential decoding only"),
    Case("flag", "transcribe: --sequential with beam search", lambda r, m: _transcribe(
        r, m, "--sequential", "--beam-size", "5"), 2, "--sequential decodes greedily"),
    # folders
    Case("folder", "eval output folder of another setting", lambda r, m: _twice(r, m), 2,
         "holds results of another setting"),
]


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def _unfinished_run(root: Path) -> Path:
    run = root / "run-in-progress"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"method": "ft", "student": "bundled:base"}))
    return run


def _twice(root: Path, model: Path) -> list[str]:
    first = _eval(root, model, extra=("--limit", "1"))
    assert main(first) == 0
    return [*first[:-2], "--beam-size", "2"]


def run_case(case: Case, root: Path, model: Path) -> tuple[int, str]:
    """(exit status, everything the command said, skipped.txt included)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(case.argv(root, model))
        except SystemExit as exit_:  # argparse
            status = int(exit_.code or 0)
    said = out.getvalue() + err.getvalue()
    skipped = root / "out" / "skipped.txt"
    return status, said + (skipped.read_text() if skipped.exists() else "")


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-inputs") / "tiny"
    tiny[0].save_pretrained(folder)
    tiny[1].save_pretrained(folder)
    return folder


@pytest.mark.parametrize("case", CASES, ids=[f"{c.category}: {c.bad}" for c in CASES])
def test_bad_input_gets_a_clear_message(case, tiny_dir, tmp_path):
    status, said = run_case(case, tmp_path, tiny_dir)
    assert status == case.status, said[-2000:]
    assert case.expected in said, said[-2000:]
    if case.decoded:  # the good clips were decoded, the bad one left out
        rows = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
        assert sorted(json.loads(r)["id"] for r in rows) == list(case.decoded)


def _table() -> str:
    """The markdown table of docs/results.md, from running every case."""
    import tempfile

    model, processor = tiny_whisper()
    lines = ["| input | bad | outcome | message |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(Path(tmp) / "tiny")
        processor.save_pretrained(Path(tmp) / "tiny")
        for i, case in enumerate(CASES):
            root = Path(tmp) / str(i)
            root.mkdir()
            status, said = run_case(case, root, Path(tmp) / "tiny")
            line = next((l for l in said.splitlines() if case.expected and case.expected in l),
                        f"(none: {', '.join(case.decoded)} decoded)")
            line = line.replace(tmp, "…").replace("|", "\\|").strip()
            outcome = {2: "stops (exit 2)", 1: "listed (exit 1)", 0: "reported, the rest finishes"}[status]
            lines.append(f"| {case.category} | {case.bad} | {outcome} | `{line[:160]}` |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(_table())
