"""What the benchmark scripts share: reading their comma-separated flags, one way, naming the item and the flag
that cannot be read (Python's bare "could not convert string to float: 'x'" names neither); and the corpus WER of
texts of several languages, counted as `eval` counts it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Callable, Iterable, TypeVar

from distilwhisper.normalize import normalize
from distilwhisper.results import error_counts, rate

T = TypeVar("T")


def comma_list(text: str, flag: str, item: Callable[[str], T] = str, known: Iterable[str] | None = None) -> list[T]:
    """The items of `text` ('a,b,c'; empty items left out), each read by `item`, whose ValueError says what the
    item is not (e.g. 'is not a number'); with `known`, an item outside it is refused, listing them."""
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if known is not None and part not in known:
            raise ValueError(f"{flag}: unknown {part} (known: {', '.join(known)})")
        try:
            values.append(item(part))
        except ValueError as err:
            raise ValueError(f"{flag}: {part!r} {err}") from None
    return values


def whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("is not a whole number") from None


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("is not a number") from None


def scored(reference: str, hypothesis: str, language: str) -> dict:
    """The error counts of one hypothesis, both texts normalised for its language, as results rows hold them (the
    stats module's bootstraps read such rows)."""
    return asdict(error_counts(normalize(reference, language), normalize(hypothesis, language)))


def corpus_wer(triples: Iterable[tuple[str, str, str]]) -> float:
    """Corpus WER (%) of (reference, hypothesis, language) triples, each normalised for its language."""
    return rate([scored(*triple) for triple in triples], "wer")
