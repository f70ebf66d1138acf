#!/usr/bin/env bash
# The paper's setting, from release folders to the final tables: Common Voice 13 (training subsets of the most
# up-voted clips, dev and test whole) and FLEURS (out-of-domain test) for 8 languages; DistilWhisper (whisper-small
# student, whisper-large-v2 teacher) and its baselines (CLSR-FT, full fine-tuning, LoRA), every one trained and
# evaluated on N processes; then each system on both test sets, and the bias study of the base models.
#
# Every step resumes: rerun the script after an interruption and it continues where it stopped (a finished step is
# reused, an interrupted training resumes from its checkpoint, an interrupted evaluation decodes only what is left).
#
#   CV=/data/cv-corpus-13.0 FLEURS=/data/fleurs bash scripts/paper_setting.sh
#
# Settings (environment variables; defaults are the paper's):
#   CV, FLEURS      release folders: CV/<locale>/{train,dev,test}.tsv + clips/, FLEURS/<lang>_<region>/test.tsv + audio/
#   LANGUAGES       Whisper codes (the Common Voice locale folders must be named the same)
#   STUDENT/TEACHER model references (hub names, local folders, or a `train` run folder for the teacher)
#   MAX_TRAIN       training clips per language (the paper: 3000, 10000 or 28000)
#   LAUNCH          how one job starts on all processes. One machine, 8 GPUs: `accelerate launch --num_processes 8`.
#                   Several machines: run the script on each, with (machine 0 of 2 shown; on the other,
#                   --machine_rank 1; the same MASTER address everywhere)
#                     LAUNCH="accelerate launch --multi_gpu --num_machines 2 --machine_rank 0 --num_processes 16 \
#                             --main_process_ip 10.0.0.1 --main_process_port 29500"
#                   or answer `accelerate config` once per machine and keep LAUNCH="accelerate launch".
#                   CPUs only: LAUNCH="torchrun --nproc_per_node N" with ACCELERATE_USE_CPU=true.
#   TRAIN_ARGS      extra `train` flags for every method (e.g. --bf16 on GPUs with bf16; --max-steps for a probe)
#   EVAL_ARGS       extra `eval` flags (e.g. --batch-size 32)
#   BIAS_ARGS       extra `bias` flags (e.g. --precisions fp32,int8-dynamic,int4-weight)
#   METHODS         systems to train (default: distilwhisper clsr-ft ft lora)
#   OUT             output folder
set -euo pipefail

CV=${CV:?set CV to the Common Voice 13 release folder}
FLEURS=${FLEURS:?set FLEURS to the FLEURS folder}
LANGUAGES=${LANGUAGES:-"ca cs gl hu pl ta th uk"}
STUDENT=${STUDENT:-openai/whisper-small}
TEACHER=${TEACHER:-openai/whisper-large-v2}
MAX_TRAIN=${MAX_TRAIN:-10000}
LAUNCH=${LAUNCH:-"accelerate launch"}
TRAIN_ARGS=${TRAIN_ARGS:-}
EVAL_ARGS=${EVAL_ARGS:-}
BIAS_ARGS=${BIAS_ARGS:-}
METHODS=${METHODS:-"distilwhisper clsr-ft ft lora"}
OUT=${OUT:-paper}
DW=${DISTILWHISPER:-distilwhisper}  # the command, for a checkout without the entry point: "python -m distilwhisper.cli"

launch() { $LAUNCH -m distilwhisper.cli "$@"; }
csv() { echo "$*" | tr ' ' ','; }
mkdir -p "$OUT/data"

# 1. manifests: Common Voice per language (all splits, the paper's training subset), FLEURS test per language
for l in $LANGUAGES; do
  [ -s "$OUT/data/cv-$l.jsonl" ] || $DW data commonvoice "$CV/$l" --out "$OUT/data/cv-$l.jsonl" --max-train "$MAX_TRAIN"
  fleurs=$(find "$FLEURS" -maxdepth 1 -type d -name "${l}_*" | head -n 1)
  [ -n "$fleurs" ] || { echo "no FLEURS folder $FLEURS/${l}_* for $l" >&2; exit 1; }
  [ -s "$OUT/data/fleurs-$l.jsonl" ] || $DW data fleurs "$fleurs" --out "$OUT/data/fleurs-$l.jsonl"
done
# one manifest per corpus (audio paths are relative to $OUT/data, where all of them live); train and dev read their
# split's lines, the evaluations --split test
for corpus in cv fleurs; do
  files=(); for l in $LANGUAGES; do files+=("$OUT/data/$corpus-$l.jsonl"); done
  cat "${files[@]}" > "$OUT/data/$corpus.jsonl.tmp" && mv "$OUT/data/$corpus.jsonl.tmp" "$OUT/data/$corpus.jsonl"
done
$DW data stats "$OUT/data/cv.jsonl"

# 2. training, every method on all processes (a run with a checkpoint resumes)
for method in $METHODS; do
  run="$OUT/runs/$method"
  teacher=(); [ "$method" = distilwhisper ] && teacher=(--teacher "$TEACHER" --teacher-cache "$OUT/teacher-cache")
  resume=(); [ -d "$run/checkpoint" ] && resume=(--resume)
  # shellcheck disable=SC2086  # TRAIN_ARGS holds several flags
  launch train --method "$method" --student "$STUDENT" "${teacher[@]}" --languages "$(csv $LANGUAGES)" \
    --train "$OUT/data/cv.jsonl" --dev "$OUT/data/cv.jsonl" --out "$run" "${resume[@]}" $TRAIN_ARGS
done

# 3. every system on both test sets, decoding shared out over the processes
for system in base $METHODS; do
  model=$STUDENT; [ "$system" = base ] || model="$OUT/runs/$system"
  for corpus in cv fleurs; do
    # shellcheck disable=SC2086
    launch eval --model "$model" --data "$OUT/data/$corpus.jsonl" --split test --out "$OUT/eval/$corpus/$system" $EVAL_ARGS
  done
done

# 4. the bias study of the base models (student and teacher sizes) on FLEURS, with the speaker groups it records
# shellcheck disable=SC2086
launch bias --models "$STUDENT,$TEACHER" --data "$OUT/data/fleurs.jsonl" --out "$OUT/bias" $BIAS_ARGS

# 5. the final table: WER per language and system on each test set (also in $OUT/tables.md)
# shellcheck disable=SC2086
python3 - "$OUT" $METHODS <<'EOF' | tee "$OUT/tables.md"
import json, sys
from pathlib import Path

out, systems = Path(sys.argv[1]), ["base", *sys.argv[2:]]
for corpus in ("cv", "fleurs"):
    summaries = {s: json.loads((out / "eval" / corpus / s / "summary.json").read_text()) for s in systems}
    languages = sorted({lang for summary in summaries.values() for lang in summary["languages"]})
    lines = [f"### {corpus}: WER (%)", "", "| system | " + " | ".join(languages) + " | all |",
             "|---" * (len(languages) + 2) + "|"]
    for system, summary in summaries.items():
        cells = [summary["languages"].get(lang, {}).get("wer", {}).get("value") for lang in languages]
        cells.append(summary["overall"]["wer"]["value"])
        lines.append(f"| {system} | " + " | ".join("-" if v is None else f"{v:.1f}" for v in cells) + " |")
    print("\n".join(lines) + "\n")
EOF
echo "tables: $OUT/tables.md; per-utterance rows: $OUT/eval/*/*/results.jsonl; bias report: $OUT/bias/report.md"
