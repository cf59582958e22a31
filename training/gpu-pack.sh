#!/usr/bin/env bash
# Packs exported splits for a lent GPU, whose tool carries at most 64 MiB with the repository: each split keeps
# its images (xz: about 0.9 kB an image) and of its records only what the VAE and LDM stages read (captions and
# the chat request; training/gpu_latents.py's pack_split).
#   training/gpu-pack.sh PACK [N_TRAIN] [N_VAL]      (reads data/train-r and data/val-r)
set -euo pipefail
cd "$(dirname "$0")/.."
pack=${1:?usage: training/gpu-pack.sh PACK [N_TRAIN] [N_VAL]}
"${ATELIER_PYTHON:-/usr/bin/python3}" - "$pack" "${2:-60000}" "${3:-1024}" <<'PY'
import sys
sys.path.insert(0, "training")
from gpu_latents import pack_split
pack, n_train, n_val = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pack_split("data/train-r", f"{pack}/train-r", n_train, images=True)
pack_split("data/val-r", f"{pack}/val-r", n_val, images=True)
PY
du -sh "$pack"
