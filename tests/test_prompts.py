"""Prompts, hotwords and language control (issue #36): what the decoder is given before a window, the errors for
a prompt that cannot fit, and detection restricted to candidate languages, on a tiny model with the real
tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from distilwhisper.cli import main
from distilwhisper.decoding import DecodingOptions, WhisperDecoder, among, context_limit, context_tokens
from distilwhisper.transcribe import SAMPLE_RATE, Transcriber
from conftest import tone


@pytest.fixture
def tiny_dir(tiny, tmp_path):
    model, processor = tiny
    model.save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    return str(tmp_path / "tiny")


def test_the_context_is_startofprev_hotwords_then_the_last_previous_tokens(tiny):
    _, processor = tiny
    tokenizer, sop = processor.tokenizer, 50361
    hot = tokenizer.encode(" Krakonoš Rübezahl", add_special_tokens=False)
    previous = list(range(1000, 1300))  # longer than the context: its last tokens are kept
    context = context_tokens(tokenizer, DecodingOptions(hotwords="Krakonoš Rübezahl", previous=previous), sop, 448)
    assert context[0] == sop and context[1:1 + len(hot)] == hot
    assert context[1 + len(hot):] == previous[-(context_limit(448) - len(hot)):]  # the previous text gives way
    assert len(context) == 1 + context_limit(448)
    assert context_tokens(tokenizer, DecodingOptions(), sop, 448) == []  # nothing before the prompt
    assert context_tokens(tokenizer, DecodingOptions(previous=[7, 8]), sop, 448) == [sop, 7, 8]


def test_a_prompt_longer_than_the_context_is_refused_naming_it(tiny, tiny_dir):
    _, processor = tiny
    long_text = " ".join(["slovo"] * 400)
    with pytest.raises(ValueError, match=r"--hotwords is \d+ tokens long; a window's context holds at most 223"):
        context_tokens(processor.tokenizer, DecodingOptions(hotwords=long_text), 50361, 448)
    with pytest.raises(ValueError, match=r"--initial-prompt is \d+ tokens long"):
        Transcriber(tiny_dir, precision="fp32")(tone(3.0), "cs", initial_prompt=long_text, fallback=False)


def test_the_initial_prompt_is_each_windows_context_and_hotwords_reach_the_decoder(tiny_dir, monkeypatch):
    transcriber = Transcriber(tiny_dir, precision="fp32")
    seen: list[DecodingOptions] = []
    original = WhisperDecoder.transcribe

    def spy(self, audios, languages, options=None, **changes):
        seen.append(DecodingOptions() if options is None else options.with_(**changes))
        return original(self, audios, languages, options, **changes)

    monkeypatch.setattr(WhisperDecoder, "transcribe", spy)
    audio = np.concatenate([tone(20.0), np.zeros(SAMPLE_RATE, np.float32), tone(20.0)])  # two windows
    tokens = transcriber.decoder.processor.tokenizer.encode(" Pepíček", add_special_tokens=False)
    transcriber(audio, "cs", initial_prompt="Pepíček", hotwords="Krakonoš", batch_size=1, fallback=False)
    assert len(seen) == 2 and all(o.previous == tuple(tokens) and o.hotwords == "Krakonoš" for o in seen)
    seen.clear()
    transcriber(audio, "cs", initial_prompt="Pepíček", fallback=False, sequential=True,
                condition_on_previous_text=False)
    assert len(seen) >= 2 and seen[0].previous == tuple(tokens)  # sequential: the first window's context only
    assert all(o.previous == () for o in seen[1:])


def test_detection_among_candidates_renormalises_and_reports_the_top(tiny_dir):
    assert among({"cs": 0.2, "sk": 0.1, "en": 0.7}, ("cs", "sk")) == pytest.approx({"cs": 2 / 3, "sk": 1 / 3})
    assert among({"cs": 0.2, "en": 0.8}, ()) == {"cs": 0.2, "en": 0.8}
    transcriber = Transcriber(tiny_dir, precision="fp32")
    audio = tone(5.0)
    free = transcriber(audio, fallback=False)
    assert len(free.language_candidates) == 5 and free.language == next(iter(free.language_candidates))
    assert sorted(free.language_candidates.values(), reverse=True) == list(free.language_candidates.values())
    others = [lang for lang in ("cs", "sk", "pl", "uk") if lang != free.language][:2]
    restricted = transcriber(audio, detect_languages=others, fallback=False)
    assert restricted.language in others and set(restricted.language_candidates) == set(others)
    assert sum(restricted.language_candidates.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="--detect-languages: unknown language code 'xx'"):
        DecodingOptions(detect_languages=("cs", "xx"))


def test_detection_reads_more_windows_while_it_is_unsure(tiny_dir, monkeypatch):
    transcriber = Transcriber(tiny_dir, precision="fp32")
    read: list[int] = []
    unsure = {"cs": 0.4, "sk": 0.35, "pl": 0.25}

    def probabilities(audios):
        read.append(len(audios))
        return [unsure for _ in audios]

    monkeypatch.setattr(transcriber.decoder, "language_probabilities", probabilities)
    windows = [tone(2.0)] * 12
    language, probability, _ = transcriber.detect(windows)
    assert (language, read) == ("cs", [3, 6]) and probability == pytest.approx(0.4)  # 3 windows, then up to 9
    read.clear()
    monkeypatch.setattr(transcriber.decoder, "language_probabilities", lambda audios: read.append(len(audios)) or [
        {"cs": 0.9, "sk": 0.1} for _ in audios])
    assert transcriber.detect(windows)[0] == "cs" and read == [3]  # sure at once: no more windows


def test_the_command_names_an_unknown_candidate_before_loading_a_model(tmp_path, capsys):
    assert main(["transcribe", str(tmp_path / "a.wav"), "--model", str(tmp_path / "none"),
                 "--detect-languages", "cs,xx"]) == 2
    assert "--detect-languages: unknown language code 'xx'" in capsys.readouterr().err
