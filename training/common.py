"""Small helpers shared by the training scripts: device choice, resumable checkpoints, loss logs with plots."""
import json
import os

import torch


def pick_device(name):
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    return torch.device(name)


def save_checkpoint(folder, state):
    """Writes atomically (temp file + rename) so a run killed mid-save keeps its previous checkpoint."""
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, "last.pt.tmp")
    torch.save(state, tmp)
    os.replace(tmp, os.path.join(folder, "last.pt"))


def load_checkpoint(folder):
    path = os.path.join(folder, "last.pt")
    return torch.load(path, map_location="cpu") if os.path.exists(path) else None


class LossLog:
    """Appends one JSON line per step to NAME.jsonl and draws NAME.png (loss curve, smoothed)."""

    def __init__(self, path_prefix, resume=False):
        os.makedirs(os.path.dirname(path_prefix) or ".", exist_ok=True)
        self.prefix = path_prefix
        if not resume and os.path.exists(path_prefix + ".jsonl"):
            os.remove(path_prefix + ".jsonl")

    def add(self, step, **values):
        with open(self.prefix + ".jsonl", "a") as f:
            f.write(json.dumps(dict(step=step, **values)) + "\n")

    def plot(self):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [json.loads(line) for line in open(self.prefix + ".jsonl")]
        keys = [k for k in rows[0] if k not in ("step", "lr")]
        fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
        for ax, key in zip(axes[0], keys):
            steps = [r["step"] for r in rows if key in r]
            values = [r[key] for r in rows if key in r]
            window = max(1, len(values) // 50)
            smooth = [sum(values[max(0, i - window + 1):i + 1]) / len(values[max(0, i - window + 1):i + 1])
                      for i in range(len(values))]
            ax.plot(steps, values, alpha=0.3)
            ax.plot(steps, smooth)
            ax.set_yscale("log")
            ax.set_title(f"{os.path.basename(self.prefix)}: {key}")
            ax.set_xlabel("step")
        fig.tight_layout()
        fig.savefig(self.prefix + ".png", dpi=80)
        plt.close(fig)
