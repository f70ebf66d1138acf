"""Where the held-out characters' lines come from (issue #35, item 3): Fish Fillets NG's minor characters (never
trained on: training holds the two main voices) by the split of their scene, and how many of their references a
stated rule marks as stylised spellings rather than transcriptions.

The rule, fixed before any decoding of such a set: a reference is stylised when it holds a stutter written with a
hyphen (`\\b(\\w)-\\1`, "C-c-copy") or a letter written three times in a row (`(\\w)\\2\\2`, "Krrruci!"): no
recogniser writes either, so the error there measures the spelling, not the recognition.

    .venv/bin/python benchmarks/held_out_scenes.py [--seed 0]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

from distilwhisper.data.fillets import DEV_SHARE, MINOR_DOMAIN, SCENE, TEST_SHARE, load_fillets, split_levels
from distilwhisper.report import markdown_table
from distilwhisper.studies.demo_config import DemoConfig
from distilwhisper.studies.demo_corpus import real_speech_sets

STYLISED = re.compile(r"\b(\w)-\1|(\w)\2\2", re.IGNORECASE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="the scene split's seed (the demo's: 0)")
    args = parser.parse_args()
    utterances, _ = load_fillets("cs", seed=args.seed)
    splits = split_levels(sorted({u.extra[SCENE] for u in utterances}), args.seed, DEV_SHARE, TEST_SHARE)
    minor = [u for u in utterances if u.domain == MINOR_DOMAIN]
    rows = []
    for split in ("train", "dev", "test"):
        lines = [u for u in minor if splits[u.extra[SCENE]] == split]
        voices = Counter(u.speaker for u in lines).most_common()
        rows.append([split, str(len(lines)), str(len({u.extra[SCENE] for u in lines})),
                     str(sum(bool(STYLISED.search(u.text)) for u in lines)),
                     ", ".join(f"{v} {n}" for v, n in voices[:6]) + (" ..." if len(voices) > 6 else "")])
    print("Minor characters' lines by the split of their scene:\n")
    print("\n".join(markdown_table(["scenes", "lines", "scenes holding them", "stylised by the rule", "voices"],
                                   rows)))
    _, _, held_out = real_speech_sets("cs", DemoConfig(), args.seed)
    from_test = sum(splits[u.extra[SCENE]] == "test" for u in held_out)
    stylised = [u.text for u in held_out if STYLISED.search(u.text)]
    print(f"\nThe demo's held-out-characters set: {len(held_out)} lines, {from_test} from test scenes, "
          f"{len(held_out) - from_test} from training or dev scenes; {len(stylised)} stylised by the rule:")
    print("\n".join(f"- {text}" for text in stylised))


if __name__ == "__main__":
    main()
