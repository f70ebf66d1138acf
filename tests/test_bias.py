"""The bias study: planted effects in constructed results are found; the real run on bundled models writes the
report, skips what this machine cannot run with the reason, and resumes without decoding again."""

import json

import numpy as np
import pytest

from distilwhisper.cli import build_parser
from distilwhisper.quantize import PRECISIONS, UnsupportedPrecision, check_supported
from distilwhisper.studies import bias, bias_tables


def _rows(language: str, gender: str, n: int, rate: float, seed: int, start: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"id": f"{language}-{gender}-{start + i}", "language": language, "gender": gender,
             "speaker": f"{language}-{gender}-{i % 3}", "word_errors": int(rng.binomial(10, rate)), "words": 10,
             "char_errors": 0, "chars": 40, "age": "adult"} for i in range(n)]


def _degrade(rows: list[dict], extra: int) -> list[dict]:
    return [dict(r, word_errors=r["word_errors"] + extra) for r in rows]


def test_planted_speaker_gap_and_its_widening_under_quantization_are_found():
    fp32 = _rows("cs", "female", 80, 0.3, 1) + _rows("cs", "male", 80, 0.1, 2)
    int8 = _degrade(fp32[:80], 2) + fp32[80:]  # women lose 20 points, men nothing
    table = bias_tables.speaker_table({("m", "fp32"): fp32, ("m", "int8-dynamic"): int8})
    base = next(r for r in table if r["precision"] == "fp32")
    quant = next(r for r in table if r["precision"] == "int8-dynamic")
    assert base["group"] == "female" and base["versus"] == "male" and base["speakers"] == "3/3"
    assert 10 < base["gap"] < 30 and base["p"] < 0.01
    assert quant["gap_change"] == pytest.approx(20.0) and quant["gap_change_low"] > 10 and quant["gap_change_p"] < 0.01


def test_no_speaker_gap_is_not_significant():
    rows = _rows("ca", "female", 80, 0.2, 3) + _rows("ca", "male", 80, 0.2, 4)
    (row,) = bias_tables.speaker_table({("m", "fp32"): rows})
    assert row["p"] > 0.05 and row["gap_low"] < 0 < row["gap_high"]


def test_quantization_hurting_the_low_resource_language_shows_per_tier_and_in_the_correlation():
    langs = {"en": 0.05, "es": 0.1, "cs": 0.2, "sw": 0.3}  # high, high, medium, very-low resource
    fp32 = [r for k, (lang, rate) in enumerate(langs.items()) for r in _rows(lang, "female", 60, rate, k)]
    extra = {"en": 0, "es": 0, "cs": 1, "sw": 3}
    int4 = [dict(r, word_errors=r["word_errors"] + extra[r["language"]]) for r in fp32]
    rows = {("m", "fp32"): fp32, ("m", "int4-weight"): int4}
    quant = bias_tables.quantization_table(rows)
    tiers = {r["group"]: r for r in quant if r["scope"] == "tier"}
    assert tiers["high"]["delta"] == pytest.approx(0.0) and tiers["high"]["p"] == 1.0
    assert tiers["very-low"]["delta"] == pytest.approx(30.0) and tiers["very-low"]["p"] < 0.01
    corr = {r["quantity"]: r for r in bias_tables.resource_correlation(bias_tables.languages_table(rows), quant)
            if r["precision"] == "int4-weight"}
    assert corr["delta vs fp32"]["rho"] < -0.9 and corr["delta vs fp32"]["languages"] == 4
    assert corr["error rate"]["rho"] == pytest.approx(-1.0)


def test_precision_lists_agree_and_unknown_or_unsupported_precisions_are_explained():
    eval_precision = next(a for a in build_parser()._subparsers._group_actions[0].choices["eval"]._actions
                          if a.dest == "precision")
    assert tuple(eval_precision.choices) == PRECISIONS  # the CLI's choices come from quantize itself
    with pytest.raises(ValueError, match="unknown precision"):
        check_supported("int3", "bundled:base")
    with pytest.raises(UnsupportedPrecision, match="language experts"):
        check_supported("ct2-int8", "bundled:base", experts="some/dir")


@pytest.mark.slow
def test_bias_run_on_bundled_models(tmp_path, speech_manifest, capsys):
    out = tmp_path / "bias"
    config = bias.BiasConfig(models=["bundled:base", "bundled:tiny.en"],
                             precisions=["int8-dynamic", "ct2-int8", "fp16"], data=[str(speech_manifest)],
                             out=str(out), per_language=3)
    result = bias.run_bias(config, progress=False)
    report = (out / "report.md").read_text()
    assert "fp16: this CPU has no fp16 arithmetic" in report or "| bundled:base | fp16 |" in report
    for name in ("variants.csv", "languages.csv", "quantization.csv", "speakers.csv", "rate_vs_hours.png",
                 "delta_per_tier.png"):
        assert (out / name).stat().st_size > 0
    assert not (out / "speaker_gaps.png").exists()  # one speaker per language here: no groups to compare
    assert "![quantization effect per resource tier](delta_per_tier.png)" in report
    ran = {(v["model"], v["precision"]) for v in result.variants if v["status"] == "ok"}
    assert {("bundled:base", "fp32"), ("bundled:base", "int8-dynamic"), ("bundled:base", "ct2-int8"),
            ("bundled:tiny.en", "fp32")} <= ran
    tiny = [r for r in result.languages if r["model"] == "bundled:tiny.en"]
    assert {r["language"] for r in tiny} == {"en"}  # English-only model: only English evaluated
    sizes = {v["precision"]: v["weight_mb"] for v in result.variants if v["model"] == "bundled:base" and "weight_mb" in v}
    assert sizes["ct2-int8"] < sizes["int8-dynamic"] < sizes["fp32"]
    assert any(r["smaller"] == "bundled:tiny.en" and r["language"] == "en" for r in result.model_size)
    lines = {p: len(p.read_text().splitlines()) for p in out.rglob("results.jsonl")}
    assert len(lines) >= 6 and all(n > 0 for n in lines.values())
    capsys.readouterr()
    bias.run_bias(config, progress=False)  # resume: nothing decoded again
    assert "decoding" not in capsys.readouterr().err
    assert {p: len(p.read_text().splitlines()) for p in out.rglob("results.jsonl")} == lines
    assert json.loads((out / "runs.json").read_text())[0]["model"] == "bundled:base"


def test_bias_rejects_clashing_ids_and_empty_data(tmp_path, speech_manifest):
    copy = tmp_path / "copy.jsonl"
    copy.write_text(speech_manifest.read_text())
    with pytest.raises(ValueError, match=r"utterance id '.*' is also in .*manifest\.jsonl; ids must be unique"):
        bias.combine_manifests([str(speech_manifest), str(copy)], tmp_path / "out")
    empty = tmp_path / "bad.jsonl"
    empty.write_text('{"id": "x", "audio": "missing.wav", "text": "hola", "language": "es"}\n')
    with pytest.raises(ValueError, match="no usable utterance in"):
        bias.combine_manifests([str(empty)], tmp_path / "out2")


def test_voice_groups_of_the_domain_column_are_compared():
    """Real Czech dialogue: main characters (domain dialogue) against minor ones (held-out-characters), a speaker
    comparison beside gender, found when planted."""
    main = [dict(r, domain="dialogue") for r in _rows("cs", "female", 60, 0.2, 5)]
    minor = [dict(r, domain="held-out-characters", gender="") for r in _rows("cs", "x", 60, 0.5, 6)]
    (row,) = bias_tables.speaker_table({("m", "fp32"): main + minor})  # one gender only: no gender comparison
    assert (row["column"], row["group"], row["versus"]) == ("domain", "dialogue", "held-out-characters")
    assert row["gap"] < -20 and row["p"] < 0.05
