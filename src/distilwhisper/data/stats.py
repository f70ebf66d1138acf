"""`distilwhisper data stats`: what a manifest holds, per language x split x domain x gender."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from distilwhisper.audio import audio_duration
from distilwhisper.data.manifest import read_manifest


def manifest_stats(path: str | Path) -> tuple[list[dict], int]:
    """Rows of (language, split, domain, gender, utterances, speakers, hours) and the number of bad lines."""
    utterances, problems = read_manifest(path)
    groups: dict[tuple[str, str, str, str], list] = defaultdict(list)
    for u in utterances:
        groups[(u.language, u.split or "-", u.domain or "-", u.gender or "unknown")].append(u)
    rows = []
    for key in sorted(groups):
        utts = groups[key]
        rows.append({"language": key[0], "split": key[1], "domain": key[2], "gender": key[3],
                     "utterances": len(utts), "speakers": len({u.speaker for u in utts}),
                     "hours": sum(audio_duration(u.audio) for u in utts) / 3600})
    return rows, len(problems)


def stats_markdown(rows: list[dict]) -> str:
    lines = ["| language | split | domain | gender | utterances | speakers | hours |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['language']} | {r['split']} | {r['domain']} | {r['gender']} | {r['utterances']} | "
              f"{r['speakers']} | {r['hours']:.3f} |" for r in rows]
    total = sum(r["utterances"] for r in rows)
    lines.append(f"| **all** | | | | {total} | | {sum(r['hours'] for r in rows):.3f} |")
    return "\n".join(lines)
