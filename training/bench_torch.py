"""The denoiser side by side with PyTorch eager: the same U-Net weights (read back from the ONNX export, see
frozen.py), the same batch (2: the two halves of classifier-free guidance) and the same number of steps as
`atelier bench`, on the same machine. `atelier bench --compare-torch` runs this and prints the ratio.

    /usr/bin/python3 training/bench_torch.py --ldm models/ldm --steps 20 --runs 10 --threads 2 [--json]
"""
import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from frozen import Denoiser  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ldm", default="models/ldm")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    denoiser = Denoiser(args.ldm)
    unet = denoiser.unet.eval()
    length, d = denoiser.tokenizer.max_length, denoiser.d_cond
    cond, pooled = torch.randn(2, length, d), torch.randn(2, d)
    calls, loops = [], []
    with torch.no_grad():
        for run in range(args.runs + 1):  # the first run warms up
            sample = torch.randn(2, 4, 8, 8)
            start = time.perf_counter()
            for step in range(args.steps):
                t = torch.full((2,), float(999 - step * (1000 // args.steps)))
                tick = time.perf_counter()
                eps = unet(sample, t, cond, pooled)
                if run > 0:
                    calls.append(1000 * (time.perf_counter() - tick))
                sample = sample - 0.05 * eps  # a data dependency between steps, as in sampling
            if run > 0:
                loops.append(1000 * (time.perf_counter() - start))
    result = dict(torch=torch.__version__, threads=args.threads, steps=args.steps, runs=args.runs, batch=2,
                  call_ms_p50=statistics.median(calls), loop_ms_p50=statistics.median(loops))
    print(json.dumps(result) if args.json else
          f"PyTorch {result['torch']} eager, {args.threads} threads: denoiser call (batch 2) p50 "
          f"{result['call_ms_p50']:.2f} ms, {args.steps} steps p50 {result['loop_ms_p50']:.1f} ms")


if __name__ == "__main__":
    main()
