"""Packs what continuing a trained LDM needs on a lent GPU into one folder the device tool can carry (≤ 64 MiB
with the repository), and unpacks it there. The training images travel as their VAE latents: the posterior's
standard deviation is about 4e-4, so its mean alone, quantised to int8 per channel, is the image to the denoiser
(decoded, 58 dB from the float latents) in 180 bytes after xz instead of 900 for the image.

    /usr/bin/python3 training/gpu_latents.py pack --vae training/checkpoints/gpu/vae-v3.pt \
        --ldm training/checkpoints/gpu/ldm-gpu.pt --data data/train-r --val data/val-r --out PACK
    python3 training/gpu_latents.py unpack --out PACK --work WORK      # on the GPU (training/gpu-continue.sh)

PACK holds train-r (records: captions and request only; no images), val-r (1,024 images), the
train latents, vae.pt and ldm.pt (the EMA weights in fp16, from which `--init` continues in fp32).
"""

import argparse
import json
import lzma
import os
import shutil
import sys

import numpy as np
import torch

from data import Shards, latent_cache, latent_cache_path
from util import ema_only, load_checkpoint
from vae import load_vae

# The posterior's log-variance: about -18.9 for every latent of every image (released VAE v3, 60,000 images).
LOGVAR = -18.9


def pack_split(src, dst, n, images):
    """The first `n` records of split `src` (captions and request only) into `dst`, xz-compressed, with their
    images when `images`."""
    os.makedirs(dst, exist_ok=True)
    index = json.load(open(f"{src}/index.json"))
    shards, left = [], n
    for shard in index["shards"]:
        keep = min(shard["n"], left)
        if keep <= 0:
            break
        left -= keep
        with open(f"{src}/{shard['records']}") as f, lzma.open(f"{dst}/{shard['records']}.xz", "wt", preset=9) as g:
            for _, line in zip(range(keep), f):
                record = json.loads(line)
                g.write(json.dumps({k: record[k] for k in ("id", "captions", "request") if k in record}) + "\n")
        if images:
            with open(f"{src}/{shard['images']}", "rb") as f, lzma.open(f"{dst}/{shard['images']}.xz", "wb", preset=9) as g:
                g.write(f.read(keep * 64 * 64 * 3))
        shards.append(dict(shard, n=keep))
    index.update(shards=shards, n=sum(s["n"] for s in shards))
    json.dump(index, open(f"{dst}/index.json", "w"), indent=1)
    return index["n"]


def pack(args):
    n_train = pack_split(args.data, f"{args.out}/train-r", args.n or 10**9, images=False)
    pack_split(args.val, f"{args.out}/val-r", args.n_val, images=True)
    vae, _ = load_vae(args.vae, "cpu")
    mean = latent_cache(Shards(args.data), vae.encoder, args.vae, args.cache, torch.device("cpu"))[:n_train, :4]
    scale = np.abs(mean).max(axis=(0, 2, 3)) / 127
    quantised = np.round(mean / scale[None, :, None, None]).astype(np.int8)
    with lzma.open(f"{args.out}/latents-train.npy.xz", "wb") as f:
        np.save(f, quantised)
    np.save(f"{args.out}/latents-train-scale.npy", scale.astype(np.float32))
    shutil.copy(args.vae, f"{args.out}/vae.pt")
    ldm = ema_only(load_checkpoint(args.ldm))
    ldm["ema"] = {k: v.half() if v.is_floating_point() else v for k, v in ldm["ema"].items()}
    torch.save(ldm, f"{args.out}/ldm.pt")
    print(f"{n_train} train latents, latent scale {scale} → {args.out}")


def unpack(args):
    for split in ("train-r", "val-r"):
        dst = f"{args.work}/data/{split}"
        os.makedirs(dst, exist_ok=True)
        for name in os.listdir(f"{args.out}/{split}"):
            src = f"{args.out}/{split}/{name}"
            if name.endswith(".xz"):
                with lzma.open(src) as f, open(f"{dst}/{name[:-3]}", "wb") as g:
                    shutil.copyfileobj(f, g)
            else:
                shutil.copy(src, dst)
    train_dir = f"{args.work}/data/train-r"
    for shard in json.load(open(f"{train_dir}/index.json"))["shards"]:
        with open(f"{train_dir}/{shard['images']}", "wb") as f:  # never read: the latents are in the cache
            f.truncate(shard["n"] * 64 * 64 * 3)
    train = Shards(train_dir)
    with lzma.open(f"{args.out}/latents-train.npy.xz") as f:
        quantised = np.load(f)
    scale = np.load(f"{args.out}/latents-train-scale.npy")
    mean = quantised.astype(np.float32) * scale[None, :, None, None]
    if len(mean) != len(train):
        raise SystemExit(f"{args.out}: {len(mean)} latents for {len(train)} train records")
    path = latent_cache_path(train, f"{args.out}/vae.pt", f"{args.work}/run")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, np.concatenate([mean, np.full_like(mean, LOGVAR)], axis=1))
    print(f"{len(mean)} train latents → {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["pack", "unpack"])
    p.add_argument("--out", required=True, help="the pack folder")
    p.add_argument("--work", help="unpack: folder that receives data/ and run/cache/")
    p.add_argument("--vae", help="pack: VAE checkpoint whose encoder made (or makes) the latents")
    p.add_argument("--ldm", help="pack: LDM checkpoint to continue")
    p.add_argument("--data", default="data/train-r")
    p.add_argument("--val", default="data/val-r")
    p.add_argument("--n", type=int, help="pack: the first N training records only")
    p.add_argument("--n-val", dest="n_val", type=int, default=1024)
    p.add_argument("--cache", default="training", help="pack: holds cache/ (the latent cache of --data)")
    args = p.parse_args()
    torch.set_num_threads(2)
    needed = {"pack": ("vae", "ldm"), "unpack": ("work",)}[args.command]
    missing = [f"--{name}" for name in needed if not getattr(args, name)]
    if missing:
        sys.exit(f"{args.command} needs {', '.join(missing)}")
    (pack if args.command == "pack" else unpack)(args)


if __name__ == "__main__":
    main()
