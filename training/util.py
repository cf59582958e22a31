"""Plumbing shared by the training stages: arguments, seeding, schedules, EMA, checkpoints, loss logs."""

import argparse
import copy
import json
import math
import os
import random
import time

import numpy as np
import torch


def parser(description, configs):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", choices=sorted(configs), default="default")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--data", default="data/train", help="training split exported by `atelier world export`")
    p.add_argument("--val", default="data/val", help="validation split")
    p.add_argument("--out", default="training", help="holds checkpoints/, logs/ and cache/")
    p.add_argument("--resume", action="store_true", help="continue from the stage's last checkpoint")
    p.add_argument("--steps", type=int, help="override the config's number of training steps")
    p.add_argument("--batch", type=int, help="override the config's batch size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (the machine has 2 shared cores)")
    p.add_argument("--minutes", type=float,
                   help="wall-clock budget: after 60 steps the step count is cut to what fits (a lent GPU's minutes)")
    return p


def setup(args, config):
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: this PyTorch sees no CUDA device")
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        # TF32 matmuls and convolutions: diffusion training does not need full fp32 precision.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    for sub in ("checkpoints", "logs", "cache"):
        os.makedirs(os.path.join(args.out, sub), exist_ok=True)
    if args.steps is not None:
        config["steps"] = args.steps
    if args.batch is not None:
        config["batch"] = args.batch
    return torch.device(args.device)


def device_name(device):
    """Where a stage trained, for the manifest: the GPU's name, or the CPU and its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu, {torch.get_num_threads()} threads"


def load_checkpoint(path):
    """Our checkpoints hold configs and RNG states besides tensors; PyTorch ≥ 2.6 loads tensors only unless told."""
    return torch.load(path, map_location="cpu", weights_only=False)


def ema_only(ckpt):
    """An LDM checkpoint slimmed to what `--init` and export.py read: without the optimiser state and the raw
    training weights (the EMA weights stay)."""
    for key in ("opt", "model"):
        ckpt.pop(key, None)
    return ckpt


class Budget:
    """`--minutes`: steps `warm`..`warm + probe` are timed (the first ones pay for CUDA's start-up), then
    config["steps"] is cut so that the run ends inside the budget (the cosine schedule decays over the steps
    that fit). 15% of the time left is kept for evaluations and saves."""

    def __init__(self, minutes, warm=10, probe=50):
        self.seconds, self.warm, self.probe = (minutes or 0) * 60, warm, probe
        self.start, self.first, self.t0 = time.time(), None, None

    def check(self, step, config):
        if not self.seconds:
            return
        if self.first is None:
            self.first = step
        if step - self.first == self.warm:
            self.t0 = time.time()
        elif step - self.first == self.warm + self.probe:
            per_step = (time.time() - self.t0) / self.probe
            left = self.seconds - (time.time() - self.start)
            fit = step + max(1, int(0.85 * left / per_step))
            if fit < config["steps"]:
                print(f"--minutes: {per_step * 1000:.1f} ms/step, training stops at step {fit} (not {config['steps']})")
                config["steps"] = fit


def lr_at(step, config):
    """Linear warm-up, then cosine decay to 10% of the peak."""
    peak, warmup, total = config["lr"], config["warmup"], config["steps"]
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class EMA:
    def __init__(self, model, decay):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model, step):
        # Warm-up of the decay so the average is not dominated by the random initialisation in short runs.
        decay = min(self.decay, (1 + step) / (10 + step))
        averaged, current = list(self.model.parameters()), list(model.parameters())
        if hasattr(torch, "_foreach_lerp_"):  # PyTorch ≥ 2.0: one launch for all parameters on a GPU
            torch._foreach_lerp_(averaged, current, 1 - decay)
        else:
            for e, p in zip(averaged, current):
                e.lerp_(p, 1 - decay)


def save_checkpoint(path, state):
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def rng_state(gen):
    return {"torch": torch.get_rng_state(), "numpy": gen.bit_generator.state, "python": random.getstate()}


def set_rng_state(gen, state):
    torch.set_rng_state(state["torch"])
    gen.bit_generator.state = state["numpy"]
    random.setstate(state["python"])


class Progress:
    """Training figures (the loss and any others) averaged over `log_every` steps and written with the learning
    rate, the time per step and the wall time, which counts training and evaluations but not saving checkpoints
    (`pause` … `resume`)."""

    def __init__(self, log, wall=0.0):
        self.log, self.wall = log, wall
        self.tick, self.figures = time.time(), []

    def step(self, step, config, **figures):
        self.figures.append(figures)
        if step % config["log_every"] == 0 or step == config["steps"]:
            now = time.time()
            self.wall += now - self.tick
            means = {k: float(np.mean([f[k] for f in self.figures])) for k in figures}
            self.log.write(step=step, **means, lr=lr_at(step, config),
                           s_per_step=(now - self.tick) / len(self.figures), wall=round(self.wall, 1))  # fmt: skip
            self.tick, self.figures = now, []

    def pause(self):
        self.wall += time.time() - self.tick

    def resume(self):
        self.tick = time.time()


class Log:
    """Append-only JSONL log of training figures; on resume, entries after the checkpoint are dropped."""

    def __init__(self, out, name, resume_step=None):
        self.path = os.path.join(out, "logs", f"{name}.jsonl")
        self.plot_path = os.path.join(out, "logs", f"{name}.png")
        self.rows = []
        if resume_step is not None and os.path.exists(self.path):
            with open(self.path) as f:
                self.rows = [r for r in map(json.loads, f) if r["step"] <= resume_step]
        with open(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.rows)

    def write(self, **row):
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)

    def plot(self, keys, title):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for key in keys:
            pts = [(r["step"], r[key]) for r in self.rows if key in r]
            if pts:
                ax.plot(*zip(*pts), label=key)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.plot_path, dpi=80)
        plt.close(fig)
