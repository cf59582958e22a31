#!/usr/bin/env bash
# The VAE (config v3) and then the LDM (config gpu) trained from scratch on a lent GPU inside its device time:
#   training/gpu.sh PACK OUT VAE_MINUTES LDM_MINUTES
# PACK comes from training/gpu-pack.sh. Each stage runs under `--minutes` (its step count cut to what fits) and
# a hard timeout; OUT receives slim checkpoints that training/export.py takes (vae-v3.pt without optimiser state,
# ldm-gpu.pt with the EMA weights only) and the stages' logs (logs.tar). DEVICE=cpu runs it here, for a check;
# VAE_ARGS and LDM_ARGS add arguments to a stage (e.g. "--batch 4" for that check).
# To train the released LDM further instead: VAE_MINUTES 0 with VAE=CKPT (the released VAE: the latent space
# stays), LDM_INIT=CKPT (the released LDM's slim checkpoint) and LDM_CONFIG=gpu-more.
set -uo pipefail
cd "$(dirname "$0")/.."
pack=${1:?usage: training/gpu.sh PACK OUT VAE_MINUTES LDM_MINUTES} out=${2:?} vae_minutes=${3:?} ldm_minutes=${4:?}
py=${ATELIER_PYTHON:-python3} device=${DEVICE:-cuda}
work=$(mktemp -d)
mkdir -p "$out" "$work/data"
cp -r "$pack"/. "$work/data/"
if command -v xz > /dev/null; then
  find "$work/data" -name '*.xz' -print0 | xargs -0 -P 16 -n 1 xz -d
else
  find "$work/data" -name '*.xz' -print0 | xargs -0 -P 16 -n 1 "$py" -c \
    'import lzma, os, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[1][:-3], "wb")); os.remove(sys.argv[1])'
fi
"$py" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")'
args=(--device "$device" --data "$work/data/train-r" --val "$work/data/val-r" --out "$work/run" --threads "${THREADS:-$(nproc)}")
# The hard limit leaves a minute beyond the budget for start-up, latent caching and the last save.
limit() { "$py" -c "print(int(float('$1') * 60 + 60))"; }

# Slim copies of a stage's last checkpoint go to OUT as soon as the stage ends, so a later failure loses nothing.
slim() {
  "$py" - "$work/run/checkpoints" "$out" "$@" <<'PY'
import sys
sys.path.insert(0, "training")
import torch
from data import file_sha256
from util import ema_only, load_checkpoint
src, out, stage, *config = sys.argv[1:]
if stage == "vae":
    vae = load_checkpoint(f"{src}/vae-v3.pt")
    vae.pop("opt", None)
    torch.save(vae, f"{out}/vae-v3.pt")
    print("vae step", vae["step"], "val_psnr", vae["val_psnr"], "scale", vae["scaling_factor"])
else:
    name = f"ldm-{config[0]}.pt"
    ldm = ema_only(load_checkpoint(f"{src}/{name}"))
    ldm["vae"].update(path="vae-v3.pt", sha256=file_sha256(f"{out}/vae-v3.pt"))
    torch.save(ldm, f"{out}/{name}")
    print("ldm step", ldm["step"], "val_loss", ldm["val_loss"])
PY
}

ldm_config=${LDM_CONFIG:-gpu}
if [ "$vae_minutes" = 0 ]; then
  mkdir -p "$work/run/checkpoints"
  cp "${VAE:?VAE_MINUTES 0 needs VAE=CKPT}" "$work/run/checkpoints/vae-v3.pt"
else
  timeout "$(limit "$vae_minutes")" "$py" training/vae.py "${args[@]}" --config v3 --minutes "$vae_minutes" ${VAE_ARGS:-}
fi
slim vae
timeout "$(limit "$ldm_minutes")" "$py" training/ldm.py "${args[@]}" --config "$ldm_config" --minutes "$ldm_minutes" \
  --vae "$work/run/checkpoints/vae-v3.pt" ${LDM_INIT:+--init "$LDM_INIT"} ${LDM_ARGS:-}
slim ldm "$ldm_config"
tar -cf "$out/logs.tar" -C "$work/run" logs
ls -la "$out"
