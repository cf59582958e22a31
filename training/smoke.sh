#!/usr/bin/env bash
# Smoke test of the diffusion training stack (CI): tiny configs train a few steps of every stage on a tiny
# dataset exported by `atelier world export`, resume once, export the result in the diffusers ONNX layout
# (DEST-untuned), tune its text encoder alone (DEST), fine-tune its VAE decoder read back from the export
# (DEST-decoder), and train a projection on it (DEST-projection).
#   training/smoke.sh DEST        (tests/fixtures/tiny-ldm was made by this script)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:?usage: training/smoke.sh DEST}
py=${ATELIER_PYTHON:-/usr/bin/python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

node bin/atelier.js world export --split train --n 64 --seed 1 --out "$work/train" > /dev/null
node bin/atelier.js world export --split val --n 16 --seed 2 --out "$work/val" > /dev/null
args=(--threads 1 --config tiny --data "$work/train" --val "$work/val" --out "$work/run")
"$py" training/vae.py "${args[@]}" --steps 4
"$py" training/ldm.py "${args[@]}" --steps 3
"$py" training/ldm.py "${args[@]}" --steps 6 --resume
# The export (DEST-untuned), then its text encoder tuned on a tiny text set, the U-Net and the null frozen, in a
# copy (DEST; the test checks that the U-Net is the same file).
"$py" training/export.py --config tiny --out "$work/run" --dest "$dest-untuned" --fp16 > /dev/null
cp -r "$dest-untuned" "$dest"
npx tsx training/text-set.ts --n 32 --seed 1 --out "$work/text-train" > /dev/null
npx tsx training/text-set.ts --n 16 --seed 2 --out "$work/text-val" > /dev/null
text=(--threads 1 --config tiny --model "$dest" --out "$work/run")
"$py" training/text_encoder.py "${text[@]}" --data "$work/text-train" --val "$work/text-val" --steps 2
"$py" training/text_encoder.py "${text[@]}" --data "$work/text-train" --val "$work/text-val" --steps 4 --resume
"$py" training/text_encoder.py "${text[@]}" --export
# A decoder fine-tune started from the export's ONNX VAE (no checkpoint needed), its misread round trips drawn
# more often, written into a copy (DEST-decoder; the test checks that only the decoder's file changed).
npx tsx training/eval-vae.ts --model "$dest" --data "$work/train" --n 64 --dry-run --failures "$work/failures.json" > /dev/null
"$py" training/vae.py "${args[@]}" --decoder-only "$dest" --hard "$work/failures.json" --steps 2
cp -r "$dest" "$dest-decoder"
"$py" training/export.py --vae-decoder "$work/run/checkpoints/vae-tiny-decoder.pt" --dest "$dest-decoder" > /dev/null
# The lent-GPU continuation (training/README.md), on the CPU: the LDM packed with its training latents, unpacked
# and trained on.
"$py" training/gpu_latents.py pack --vae "$work/run/checkpoints/vae-tiny.pt" --ldm "$work/run/checkpoints/ldm-tiny.pt" \
  --data "$work/train" --val "$work/val" --n-val 16 --cache "$work/run" --out "$work/pack" > /dev/null
DEVICE=cpu THREADS=1 ATELIER_PYTHON="$py" MORE_ARGS="--batch 8 --steps 2" \
  training/gpu-continue.sh "$work/pack" "$work/continued" 1 > /dev/null
# The projection between the committed tiny planner and the LDM just exported; a warm start (--init) from it
# is how the projection follows a denoiser that trained on.
proj=(--config tiny --planner tests/fixtures/tiny-planner --denoiser "$dest" --data "$work/train" --val "$work/val"
      --out "$work/run" --threads 1)
"$py" training/projection.py train "${proj[@]}" --steps 3
"$py" training/projection.py train "${proj[@]}" --steps 5 --resume
"$py" training/projection.py train "${proj[@]}" --steps 2 --name projection-warm --init "$work/run/checkpoints/projection-tiny.pt"
"$py" training/projection.py export --config tiny --name projection-warm --out "$work/run" --dest "$dest-projection"
