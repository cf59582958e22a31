#!/usr/bin/env bash
# Projection ablations (issue 7): every variant trains with the same data, seed and steps, is exported beside
# the embedded planner and denoiser, and is scored by `atelier eval --mode plan` on the same prompts and seeds;
# the baselines are `--mode native` (the denoiser's own text encoder on the raw prompt) and `--mode plan-text`
# (the planner's plan, as a caption, through that text encoder). Resumable: finished
# evals are kept, interrupted training resumes. OUT/summary.md gets one row per run.
#   training/projection_ablations.sh [OUT]
#   env: CONFIG (default) STEPS (1500) BATCH (the config's) MODELS (models) DATA VAL PROMPTS IMAGES (2) SEED (1)
#        TRAIN_OUT (training)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/projection-ablations}
config=${CONFIG:-default}
steps=${STEPS:-1500}
batch=(${BATCH:+--batch "$BATCH"})
models=$(realpath "${MODELS:-models}")
data=${DATA:-data/projection/train}
val=${VAL:-data/projection/val}
prompts=${PROMPTS:-evals/prompts/shapes-geneval.jsonl}
images=${IMAGES:-2}
seed=${SEED:-1}
train_out=${TRAIN_OUT:-training}
py=${ATELIER_PYTHON:-/usr/bin/python3}
variants=("mix-M16-aux:" "last-M16-aux:--layers last" "mix-M8-aux:--M 8" "mix-M32-aux:--M 32"
  "mix-M16-noaux:--aux-weight 0")

evaluate() { # mode models-dir dest
  [ -f "$3/report.json" ] && return 0
  node bin/atelier.js eval --prompts "$prompts" --mode "$1" --models "$2" --images-per-prompt "$images" \
    --seed "$seed" --out "$3"
}

mkdir -p "$out"
evaluate native "$models" "$out/native"
evaluate plan-text "$models" "$out/plan-text"
for variant in "${variants[@]}"; do
  name=${variant%%:*}
  read -r -a flags <<< "${variant#*:}"
  dir=$out/$name
  [ -f "$dir/eval/report.json" ] && continue
  resume=()
  [ -f "$train_out/checkpoints/projection-$name.pt" ] && resume=(--resume)
  "$py" training/projection.py train --config "$config" --name "projection-$name" --out "$train_out" \
    --planner "$models/planner" --denoiser "$models/ldm" --data "$data" --val "$val" --steps "$steps" \
    "${batch[@]}" --seed "$seed" "${flags[@]}" "${resume[@]}"
  "$py" training/projection.py export --name "projection-$name" --out "$train_out" --dest "$dir/models/projection"
  ln -sfn "$models/ldm" "$dir/models/ldm"
  ln -sfn "$models/planner" "$dir/models/planner"
  evaluate plan "$dir/models" "$dir/eval"
done

node --input-type=module - "$out" native plan-text "${variants[@]%%:*}" <<'EOF'
import { existsSync, readFileSync, writeFileSync } from "node:fs";
const [out, ...runs] = process.argv.slice(2);
const rows = runs.map((run) => {
  const baseline = run === "native" || run === "plan-text";
  const path = `${out}/${run}/${baseline ? "" : "eval/"}report.json`;
  const report = JSON.parse(readFileSync(path, "utf8"));
  const manifest = `${out}/${run}/models/projection/projection.json`;
  const val = existsSync(manifest) ? JSON.parse(readFileSync(manifest, "utf8")).training.val : {};
  return { run, report, val };
});
const categories = Object.keys(rows[0].report.categories);
const pct = (x) => (100 * x).toFixed(1);
const lines = [
  `| run | overall | ${categories.join(" | ")} | val ε-loss (native) |`,
  `|---|---|${categories.map(() => "---|").join("")}---|`,
  ...rows.map(({ run, report, val }) =>
    `| ${run} | ${pct(report.overall)} | ${categories.map((c) => pct(report.categories[c]?.accuracy ?? 0)).join(" | ")} | ` +
    `${val.val_loss === undefined ? "" : `${val.val_loss.toFixed(4)} (${val.val_native.toFixed(4)})`} |`),
];
writeFileSync(`${out}/summary.md`, `${lines.join("\n")}\n`);
console.log(lines.join("\n"));
EOF
