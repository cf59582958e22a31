#!/usr/bin/env bash
# Builds a tiny projection between a tiny planner and a tiny LDM (default: the committed fixtures), trained
# a few steps and resumed once, exported with its manifest and reference outputs. tests/fixtures/
# tiny-projection was made by this script; rebuild it whenever tiny-planner or tiny-ldm is re-exported
# (the projection records their sha256 and refuses any other pair).
#   training/projection_fixture.sh [DEST] [PLANNER] [DENOISER]
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-tests/fixtures/tiny-projection}
planner=${2:-tests/fixtures/tiny-planner}
denoiser=${3:-tests/fixtures/tiny-ldm}
py=${ATELIER_PYTHON:-/usr/bin/python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

node bin/atelier.js world export --split train --n 64 --seed 1 --out "$work/train" > /dev/null
node bin/atelier.js world export --split val --n 16 --seed 2 --out "$work/val" > /dev/null
args=(--config tiny --planner "$planner" --denoiser "$denoiser" --data "$work/train" --val "$work/val" --out "$work/run")
"$py" training/projection.py train "${args[@]}" --steps 6
"$py" training/projection.py train "${args[@]}" --steps 12 --resume
"$py" training/projection.py export --config tiny --out "$work/run" --dest "$dest"
