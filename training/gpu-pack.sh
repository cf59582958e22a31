#!/usr/bin/env bash
# Packs exported splits for a lent GPU, whose tool carries at most 64 MiB with the repository: each split keeps
# its images (xz: about 0.9 kB an image) and of its records only what the VAE and LDM stages read (captions and
# the chat request).
#   training/gpu-pack.sh PACK [N_TRAIN] [N_VAL]      (reads data/train-r and data/val-r)
set -euo pipefail
cd "$(dirname "$0")/.."
pack=${1:?usage: training/gpu-pack.sh PACK [N_TRAIN] [N_VAL]}
py=${ATELIER_PYTHON:-/usr/bin/python3}
split() {  # SRC DEST LIMIT
  mkdir -p "$2"
  "$py" - "$@" <<'PY'
import json, sys
src, dst, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
index = json.load(open(f"{src}/index.json"))
shards, left = [], limit
for s in index["shards"]:
    n = min(s["n"], left)
    if n <= 0:
        break
    left -= n
    with open(f"{src}/{s['records']}") as f, open(f"{dst}/{s['records']}", "w") as g:
        for _, line in zip(range(n), f):
            r = json.loads(line)
            g.write(json.dumps({k: r[k] for k in ("id", "captions", "request") if k in r}) + "\n")
    with open(f"{src}/{s['images']}", "rb") as f, open(f"{dst}/{s['images']}", "wb") as g:
        g.write(f.read(n * 64 * 64 * 3))
    shards.append(dict(s, n=n))
index.update(shards=shards, n=sum(s["n"] for s in shards))
json.dump(index, open(f"{dst}/index.json", "w"), indent=1)
PY
  xz -9 -T2 "$2"/*.u8 "$2"/*.jsonl
}
split data/train-r "$pack/train-r" "${2:-60000}"
split data/val-r "$pack/val-r" "${3:-1024}"
du -sh "$pack"
