#!/usr/bin/env bash
# A trained LDM trained further on a lent GPU (config gpu-more, the VAE and so its latent space kept), inside the
# device time:
#   training/gpu-continue.sh PACK OUT MINUTES
# PACK comes from `training/gpu_latents.py pack`. The stage runs under `--minutes` and a hard timeout (MORE_LIMIT
# seconds); OUT receives a slim checkpoint (ldm-gpu-more.pt: EMA weights only), the stage's output and its logs
# (logs.tar). Its export's text encoder is then tuned by training/text_encoder.py (training/README.md).
# DEVICE=cpu with MORE_ARGS="--batch 8 --steps 20" checks it here.
set -uo pipefail
cd "$(dirname "$0")/.."
pack=${1:?usage: training/gpu-continue.sh PACK OUT MINUTES} out=${2:?} more=${3:?}
py=${ATELIER_PYTHON:-python3} device=${DEVICE:-cuda}
work=$(mktemp -d)
mkdir -p "$out"
export PYTHONUNBUFFERED=1
"$py" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")'
"$py" training/gpu_latents.py unpack --out "$pack" --work "$work" || exit 1
args=(--device "$device" --data "$work/data/train-r" --val "$work/data/val-r" --out "$work/run"
      --threads "${THREADS:-$(nproc)}" --vae "$pack/vae.pt")

slim() {  # CONFIG: the stage's last checkpoint without optimiser state and training weights, to OUT
  "$py" - "$work/run/checkpoints/ldm-$1.pt" "$out/ldm-$1.pt" <<'PY'
import sys
sys.path.insert(0, "training")
import torch
from util import ema_only, load_checkpoint
ckpt = ema_only(load_checkpoint(sys.argv[1]))
torch.save(ckpt, sys.argv[2])
print(sys.argv[2], "step", ckpt["step"], "val_loss", ckpt["val_loss"])
PY
}

timeout "${MORE_LIMIT:-400}" "$py" training/ldm.py "${args[@]}" --config gpu-more --minutes "$more" \
  --init "$pack/ldm.pt" --batch 2048 ${MORE_ARGS:-} 2>&1 | tee "$out/more.log"
slim gpu-more || exit 1
tar -cf "$out/logs.tar" -C "$work/run" logs
ls -la "$out"
