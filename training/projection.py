"""Projection layers: the planner's hidden states of the plan span → conditioning of the frozen denoiser
(primer: "Projection Layers", "Multi-Stream Conditioning", "Training Strategies", Strategy A).

    H = Σ_l softmax(w)_l H^(l)               learned mix of the top-k planner layers (or one chosen layer)
    E = MLP(LayerNorm(H)) + S[slot]          two-layer GELU MLP, d_llm → d_cond, per plan token, plus a learned
                                             embedding of the object the token describes (plan_slots: 1..K
                                             for the tokens of object K's layout, object and colour entries,
                                             0 for the rest), so that a query can gather one object whole
    E = E + SelfAttn(E);  E = E + FF(E)      `plan_blocks` transformer blocks over the plan span: a colour
                                             token meets the object whose index it names before the bottleneck
    C = D + Attn(D, E, E);  C = C + FF(C)    M learned queries D cross-attend to the plan → C_tokens [M×d_cond];
                                             with `object_queries` q, q queries per object slot 1..slots−1
                                             see only that object's tokens (the rest see every token), so
                                             each of those C tokens carries one object's shape, colour, size
                                             and place together, as a bound word of the native encoder does
    c = W · Σ_i softmax(E_i·q) E_i           attention pooling → c_global [d_cond], the U-Net's `text_embeds`
    C_null [M×d_cond], c_null [d_cond]       learned null conditioning for classifier-free guidance

Strategy A: the planner and the denoiser stay frozen (both read back from their ONNX exports, frozen.py);
only these layers learn, through the denoiser's own loss: ε-MSE (min-SNR weighted, as the denoiser was
trained) through the frozen U-Net with C as encoder_hidden_states and c as text_embeds, plus optionally
λ × an alignment to the native text encoder on the record's caption (its pooled vector ↔ c, its mean token
↔ the mean of C: the primer's latent-space supervision). With probability `cond_drop` a sample's
conditioning is the null. Plan-span hidden states (the record's chat `request` + `plan` through the chat
template, sliced to the plan, as planner/planner.ts does; for `context_rate` of the training records after
an earlier turn, as in edit sessions), VAE latents and alignment targets are computed once per split and
cached in OUT/cache/.

    node bin/atelier.js world export --split train --n 60000 --seed 11 --out data/projection/train
    node bin/atelier.js world export --split val --n 512 --seed 12 --out data/projection/val
    /usr/bin/python3 training/projection.py precompute --planner models/planner --denoiser models/ldm \
        --data data/projection/train --val data/projection/val      (optional: train does it too)
    /usr/bin/python3 training/projection.py train --planner models/planner --denoiser models/ldm \
        --data data/projection/train --val data/projection/val [--config tiny] [--layers last|mix|2,3] \
        [--top-k K] [--M M] [--aux-weight λ] [--name NAME] [--resume | --init CKPT] [--device cuda]
    /usr/bin/python3 training/projection.py export [--name projection-default] --dest models/projection
"""

import os

# Idle OpenMP threads must sleep, not spin: the 2 cores are shared with other jobs (as in ldm.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import datetime
import hashlib
import json
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

from data import Shards, file_sha256, latent_cache
from frozen import Denoiser, load_planner
from ldm import Attention, TextBlock
from planner import words
from util import (Budget, Log, Progress, load_checkpoint, lr_at, parser, rng_state, save_checkpoint, set_rng_state,
                  setup)

CONFIGS = {
    "default": dict(M=16, layers="mix", top_k=3, heads=4, mlp_mult=2, plan_blocks=1, slots=5, object_queries=3,
                    aux_weight=0.1, cond_drop=0.1, context_rate=0.25,
                    snr_gamma=5.0, batch=64, steps=4000, lr=5e-4, warmup=200, weight_decay=0.01,
                    log_every=50, eval_every=500, n_val=256),
    "tiny": dict(M=8, layers="mix", top_k=2, heads=2, mlp_mult=2, plan_blocks=1, slots=3, object_queries=2,
                 aux_weight=0.1, cond_drop=0.1, context_rate=0.25,
                 snr_gamma=5.0, batch=8, steps=20, lr=1e-3, warmup=5, weight_decay=0.01,
                 log_every=5, eval_every=10, n_val=16),
}  # fmt: skip
OPSET = 17
# Conversations whose plan-span conditioning reference.json records (a single request, and an edit).
_CIRCLE = ("<IMG_BEGIN> <STYLE> flat <LAYOUT> 1 center <OBJECT> 1 one medium circle <COLOR> 1 red ; "
           "background white <LIGHTING> daylight <IMG_END>")  # fmt: skip
EXAMPLES = [
    dict(messages=[("user", "draw a red circle in the center on a white background")], plan=_CIRCLE),
    dict(messages=[("user", "draw a red circle in the center on a white background"), ("assistant", _CIRCLE),
                   ("user", "now make the circle blue")], plan=_CIRCLE.replace("red", "blue")),
]  # fmt: skip


ENTRY_SECTIONS = ("<LAYOUT>", "<OBJECT>", "<COLOR>")


def plan_slots(plan, slots):
    """Per plan token (planner.words), the object its entry describes: K for every token of the entries
    "K …" under <LAYOUT>, <OBJECT> and <COLOR> (clamped to slots − 1), 0 for section tags, separators and
    the scene-wide entries (style, background, lighting). projection/slots.ts computes the same."""
    out, section, slot, entry_start = [], False, 0, False
    for w in words(plan):
        if w.startswith("<"):
            section, slot, entry_start = w in ENTRY_SECTIONS, 0, w in ENTRY_SECTIONS
            out.append(0)
        elif section and w == ";":
            slot, entry_start = 0, True
            out.append(0)
        else:
            if entry_start:
                slot = min(int(w), slots - 1) if section and w.isdigit() else 0
                entry_start = False
            out.append(slot)
    return out


class Projection(nn.Module):
    """H_plan [B,k,S,d_llm] (+ slot ids [B,S], padding mask [B,S]) → C_tokens [B,M,d_cond], c_global [B,d_cond]."""

    def __init__(self, d_llm, d_cond, k, M, heads, mlp_mult, plan_blocks=0, slots=0, object_queries=0, **_):
        super().__init__()
        n_global = M - (slots - 1) * object_queries
        if object_queries and (slots < 2 or n_global < 1):
            raise SystemExit(f"M = {M} leaves no query for the whole plan after {object_queries} per object slot")
        # Which slot each query reads: 0 (every token) for the first n_global, then object_queries per object.
        owner = [0] * n_global + [s for s in range(1, slots) for _ in range(object_queries)] if object_queries else []
        self.register_buffer("query_slots", torch.tensor(owner, dtype=torch.long), persistent=False)
        self.object_queries = object_queries
        self.mix = nn.Parameter(torch.zeros(k))
        self.norm = nn.LayerNorm(d_llm)
        self.mlp = nn.Sequential(nn.Linear(d_llm, mlp_mult * d_cond), nn.GELU(), nn.Linear(mlp_mult * d_cond, d_cond))
        self.slot_embedding = nn.Embedding(slots, d_cond) if slots else None
        self.plan_blocks = nn.ModuleList(TextBlock(d_cond, heads) for _ in range(plan_blocks))
        self.queries = nn.Parameter(torch.randn(M, d_cond) * 0.02)
        self.ln_q, self.ln_kv, self.attn = nn.LayerNorm(d_cond), nn.LayerNorm(d_cond), Attention(d_cond, heads)
        self.ff = nn.Sequential(nn.LayerNorm(d_cond), nn.Linear(d_cond, 4 * d_cond), nn.GELU(),
                                nn.Linear(4 * d_cond, d_cond))  # fmt: skip
        self.pool_query = nn.Parameter(torch.zeros(d_cond))
        self.pool_out = nn.Linear(d_cond, d_cond)
        self.null_tokens = nn.Parameter(torch.zeros(M, d_cond))
        self.null_pooled = nn.Parameter(torch.zeros(d_cond))
        # Small-variance init (primer): the frozen U-Net first sees a near-zero context and the conditioning
        # grows from there instead of starting as large random vectors.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # The plan blocks start as the identity (zero residual branches) and the slot embeddings at zero, so
        # that a warm start from a projection without them begins exactly where that projection was.
        if self.slot_embedding is not None:
            nn.init.zeros_(self.slot_embedding.weight)
        for block in self.plan_blocks:
            for out in (block.attn.out, block.ff.out):
                nn.init.zeros_(out.weight)
                nn.init.zeros_(out.bias)

    def mix_weights(self):
        return self.mix.softmax(0)

    def forward(self, hidden, slots=None, mask=None):
        h = (self.mix_weights()[None, :, None, None] * hidden).sum(1)
        e = self.mlp(self.norm(h))
        if self.slot_embedding is not None:
            e = e + self.slot_embedding(slots)
        bias = None if mask is None else ((~mask).float() * -1e4)[:, None, None, :]
        for block in self.plan_blocks:
            e = block(e, bias)
        q = self.queries.expand(e.shape[0], -1, -1)
        if self.object_queries:
            owner = self.query_slots[None, :, None]
            seen = (slots[:, None, :] == owner) | (owner == 0)
            if mask is not None:
                seen = seen & mask[:, None, :]
            # A slot without tokens (fewer objects than slots) leaves its queries as they are.
            present = seen.any(-1, keepdim=True).float()
            tokens = q + present * self.attn(self.ln_q(q), self.ln_kv(e), ((~seen).float() * -1e4)[:, None])
        else:
            tokens = q + self.attn(self.ln_q(q), self.ln_kv(e), bias)
        tokens = tokens + self.ff(tokens)
        score = (e @ self.pool_query) * e.shape[-1] ** -0.5
        if mask is not None:
            score = score.masked_fill(~mask, -1e4)
        pooled = self.pool_out((score.softmax(-1)[..., None] * e).sum(1))
        return tokens, pooled


def plan_ids(messages, plan, vocab):
    """Token ids of the chat template over `messages` [(role, content)] with the generation prompt, then the
    plan; and where the plan starts (planner.ts hiddenStates does the same)."""
    unk = vocab["[UNK]"]
    text = "".join(f"<|{role}|> {content} " + ("<|end|> " if role == "assistant" else "") for role, content in messages)
    prefix = [vocab.get(w, unk) for w in words(text + "<|assistant|>")]
    return prefix + [vocab.get(w, unk) for w in words(plan)], len(prefix)


def contexts(records, rate, seed=0):
    """The conversation before each record's plan: its request, and for a share `rate` of the records an
    earlier turn first (another record's request and plan), so that the projection learns to read the plan
    span whatever conversation precedes it, as in edit sessions."""
    gen = np.random.default_rng(seed)
    other = gen.integers(0, len(records), len(records))
    extra = gen.random(len(records)) < rate
    return [([("user", records[o]["request"]), ("assistant", records[o]["plan"])] if e else [])
            + [("user", r["request"])] for r, o, e in zip(records, other, extra)]  # fmt: skip


def planner_layers(spec, top_k, n_layers):
    """`last` → [L]; `mix` → the top k of 1..L; `2,3` → those (0 = embeddings, L = after the final norm)."""
    if spec == "last":
        return [n_layers]
    if spec == "mix":
        if not 1 <= top_k <= n_layers + 1:
            raise SystemExit(f"--top-k must be in 1..{n_layers + 1}, got {top_k}")
        return list(range(n_layers - top_k + 1, n_layers + 1))
    layers = [int(x) for x in spec.split(",")]
    if any(not 0 <= x <= n_layers for x in layers):
        raise SystemExit(f"--layers: planner layers are 0..{n_layers}, got {spec}")
    return layers


@torch.no_grad()
def plan_states(planner, vocab, conversations, plans, device, batch=64):
    """Plan-span hidden states of every layer 0..L, float32 [S, L+1, d] per record (lists, in order)."""
    seqs = [plan_ids(m, p, vocab) for m, p in zip(conversations, plans)]
    order = np.argsort([len(ids) for ids, _ in seqs], kind="stable")
    out = [None] * len(seqs)
    for i in range(0, len(order), batch):
        rows = order[i : i + batch]
        width = max(len(seqs[j][0]) for j in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for r, j in enumerate(rows):
            ids[r, : len(seqs[j][0])] = torch.tensor(seqs[j][0])
            mask[r, : len(seqs[j][0])] = 1
        positions = torch.arange(width)[None].expand(len(rows), -1)
        hidden = torch.stack(planner(ids.to(device), mask.to(device), positions.to(device))[2], dim=2).cpu()
        for r, j in enumerate(rows):
            ids_j, start = seqs[j]
            out[j] = hidden[r, start : len(ids_j)].numpy()
    return out


def check_records(root, records):
    if any("request" not in r for r in records):
        raise SystemExit(f"{root}: records have no `request`; export the split again with `node bin/atelier.js "
                         "world export` (see the module docstring)")  # fmt: skip


class Split:
    """One split and its caches in OUT/cache/: plan-span hidden states (float16, every planner layer 0..L,
    ragged by offsets) keyed by the planner's sha256; the VAE posteriors (data.latent_cache) and the native
    text encoder's (pooled, mean token) on each record's first caption, keyed by those graphs' sha256."""

    def __init__(self, root, n, out):
        self.root, self.out = root, out
        self.shards = Shards(root)
        self.n = min(n or len(self.shards), len(self.shards))
        self.records = self.shards.records[: self.n]
        check_records(root, self.records)

    def _cache(self, kind, sha):
        key = f"{os.path.abspath(self.root)}|{self.n}|{self.shards.index.get('seed')}|{sha}"
        split = self.shards.index.get("split", "data")
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return os.path.join(self.out, "cache", f"projection-{kind}-{split}-{digest}")

    def load_plans(self, planner, vocab, planner_sha, device, context_rate, chunk=4096):
        folder = self._cache("plans", f"{planner_sha}|{context_rate}")
        if not os.path.exists(os.path.join(folder, "offsets.npy")):
            os.makedirs(folder, exist_ok=True)
            tick = time.time()
            offsets = np.concatenate([[0], np.cumsum([len(words(r["plan"])) for r in self.records])]).astype(np.int64)
            shape = (int(offsets[-1]), planner.c["num_hidden_layers"] + 1, planner.c["hidden_size"])
            hidden = np.lib.format.open_memmap(os.path.join(folder, "hidden.tmp.npy"), "w+", np.float16, shape)
            conversations = contexts(self.records, context_rate)
            for i in range(0, self.n, chunk):
                part = self.records[i : i + chunk]
                states = plan_states(planner, vocab, conversations[i : i + chunk], [r["plan"] for r in part], device)
                hidden[offsets[i] : offsets[i + len(part)]] = np.concatenate(states)
                print(f"plan states {i + len(part)}/{self.n} ({time.time() - tick:.0f}s)", flush=True)
            hidden.flush()
            del hidden
            os.replace(os.path.join(folder, "hidden.tmp.npy"), os.path.join(folder, "hidden.npy"))
            np.save(os.path.join(folder, "offsets.npy"), offsets)
            print(f"cached {self.n} plans ({offsets[-1]} tokens) in {folder}", flush=True)
        self.hidden = np.load(os.path.join(folder, "hidden.npy"), mmap_mode="r")
        self.offsets = np.load(os.path.join(folder, "offsets.npy"))

    def load_slots(self, slots):
        """Slot ids of every plan token, ragged by the plan offsets (cheap: computed, not cached)."""
        self.slots = np.concatenate([plan_slots(r["plan"], slots) for r in self.records]).astype(np.int64)
        if len(self.slots) != self.offsets[-1]:
            raise SystemExit(f"{self.root}: slot ids ({len(self.slots)}) and plan tokens ({self.offsets[-1]}) differ")

    def load_targets(self, den, device):
        path = self._cache("aux", file_sha256(os.path.join(den.folder, "text_encoder", "model.onnx"))) + ".npy"
        if not os.path.exists(path):
            pooled, mean = den.encode_text([r["captions"][0] for r in self.records])
            np.save(path[:-4] + ".tmp.npy", torch.stack([pooled, mean], 1).numpy())
            os.replace(path[:-4] + ".tmp.npy", path)
        self.aux = torch.from_numpy(np.load(path))
        vae_file = os.path.join(den.folder, "vae_encoder", "model.onnx")
        self.latents = latent_cache(self.shards, den.vae_encoder, vae_file, self.out, device)[: self.n]

    def batch(self, idx, layers, device):
        """Hidden states [B,k,S,d] of the chosen layers and slot ids [B,S] (zero-padded), and mask [B,S]."""
        lengths = self.offsets[idx + 1] - self.offsets[idx]
        h = np.zeros((len(idx), len(layers), lengths.max(), self.hidden.shape[2]), np.float32)
        slots = np.zeros((len(idx), lengths.max()), np.int64)
        for r, j in enumerate(idx):
            h[r, :, : lengths[r]] = self.hidden[self.offsets[j] : self.offsets[j + 1]][:, layers].transpose(1, 0, 2)
            slots[r, : lengths[r]] = self.slots[self.offsets[j] : self.offsets[j + 1]]
        mask = torch.arange(lengths.max())[None] < torch.from_numpy(lengths)[:, None]
        return torch.from_numpy(h).to(device), torch.from_numpy(slots).to(device), mask.to(device)

    def sample_latents(self, idx, gen, scale, device):
        mean, logvar = torch.from_numpy(np.asarray(self.latents[idx])).chunk(2, dim=1)
        z = mean + torch.randn(mean.shape, generator=gen) * (0.5 * logvar.clamp(-30, 20)).exp()
        return (z * scale).to(device)


def precompute(args):
    """Fills the caches with what exists now: plan states once the planner is exported, latents and
    alignment targets once the denoiser is (so the cheap part can run while the denoiser still trains)."""
    config = dict(CONFIGS[args.config])
    device = setup(args, config)
    splits = [Split(args.data, args.n, args.out), Split(args.val, config["n_val"], args.out)]
    done = []
    if os.path.exists(os.path.join(args.planner, "onnx", "model.onnx")):
        planner, vocab = load_planner(args.planner)
        sha = file_sha256(os.path.join(args.planner, "onnx", "model.onnx"))
        for split, rate in zip(splits, (config["context_rate"], 0.0)):
            split.load_plans(planner.to(device), vocab, sha, device, rate)
        done.append(f"plan states ({args.planner})")
    if os.path.exists(os.path.join(args.denoiser, "unet", "model.onnx")):
        den = Denoiser(args.denoiser, device)
        for split in splits:
            split.load_targets(den, device)
        done.append(f"latents and alignment targets ({args.denoiser})")
    if not done:
        raise SystemExit(f"neither {args.planner}/onnx/model.onnx nor {args.denoiser}/unet/model.onnx exists")
    print(f"cached {', '.join(done)} for {' and '.join(f'{s.root} ({s.n})' for s in splits)}")


def frozen_models(args, device):
    planner, vocab = load_planner(args.planner)
    den = Denoiser(args.denoiser, device)
    models = dict(planner=dict(folder=args.planner, file="onnx/model.onnx",
                               sha256=file_sha256(os.path.join(args.planner, "onnx", "model.onnx")),
                               hidden_size=planner.c["hidden_size"], num_hidden_layers=planner.c["num_hidden_layers"]),
                  denoiser=dict(folder=args.denoiser, file="unet/model.onnx",
                                sha256=file_sha256(os.path.join(args.denoiser, "unet", "model.onnx")),
                                cross_attention_dim=den.d_cond))  # fmt: skip
    return planner.to(device), vocab, den, models


def train(args):
    config = dict(CONFIGS[args.config])
    for key in ("layers", "top_k", "M", "plan_blocks", "slots", "object_queries", "aux_weight", "lr"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    device = setup(args, config)
    name = args.name or f"projection-{args.config}"
    path = os.path.join(args.out, "checkpoints", f"{name}.pt")
    resume = load_checkpoint(path) if args.resume else None
    if resume:
        config = resume["config"] | ({"steps": args.steps} if args.steps else {})
    planner, vocab, den, models = frozen_models(args, device)
    if resume:
        for which in ("planner", "denoiser"):
            if resume["models"][which]["sha256"] != models[which]["sha256"]:
                raise SystemExit(f"{path} was trained for another {which} "
                                 f"({resume['models'][which]['sha256'][:12]}…); {models[which]['folder']} has "
                                 f"{models[which]['sha256'][:12]}…")  # fmt: skip
    layers = planner_layers(config["layers"], config["top_k"], planner.c["num_hidden_layers"])
    config.update(layers_used=layers, d_llm=planner.c["hidden_size"], d_cond=den.d_cond, k=len(layers))
    train_split, val_split = Split(args.data, args.n, args.out), Split(args.val, config["n_val"], args.out)
    for split, rate in ((train_split, config["context_rate"]), (val_split, 0.0)):
        split.load_plans(planner, vocab, models["planner"]["sha256"], device, rate)
        split.load_slots(config.get("slots", 0) or 1)
        split.load_targets(den, device)
    del planner

    model = Projection(**config).to(device)
    if args.init and not resume:
        # Warm start: new optimiser and schedule; plan blocks the checkpoint lacks start as the identity, and
        # M = k·M0 queries start as k copies of its M0, nearly function-preserving (the U-Net's softmax over
        # copies of a token attends to it as over the token once); a little noise breaks the copies' symmetry,
        # without which they would get equal gradients and stay copies.
        weights = load_checkpoint(args.init)["model"]
        for key in ("queries", "null_tokens"):
            m0 = weights[key].shape[0]
            if config["M"] != m0 and config["M"] % m0 == 0:
                weights[key] = weights[key].repeat(config["M"] // m0, 1)
                if key == "queries":
                    noise = torch.randn(weights[key].shape, generator=torch.Generator().manual_seed(args.seed))
                    weights[key] += 0.02 * weights[key].std() * noise
                print(f"{key}: {m0} → {config['M']} (copies)")
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if unexpected or any(not k.startswith(("plan_blocks.", "slot_embedding.")) for k in missing):
            raise SystemExit(f"{args.init} is another architecture (missing {missing}, unexpected {unexpected})")
        print(f"initialised from {args.init}" + (f" (new: {', '.join(missing)})" if missing else ""))
    elif not resume:
        # The null starts where the denoiser's own unconditional input is (its first M null tokens).
        null_tokens, null_pooled = den.null()
        with torch.no_grad():
            model.null_tokens.copy_(null_tokens[torch.arange(config["M"]) % len(null_tokens)])
            model.null_pooled.copy_(null_pooled)
    decay = [p for n_, p in model.named_parameters() if p.dim() >= 2 and "null" not in n_ and n_ != "queries"]
    other = [p for n_, p in model.named_parameters() if not any(p is q for q in decay)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config["weight_decay"]},
                             {"params": other, "weight_decay": 0.0}], lr=config["lr"], betas=(0.9, 0.99))  # fmt: skip
    gen = np.random.default_rng(args.seed)
    g_noise = torch.Generator().manual_seed(args.seed)
    step, wall = 0, 0.0
    if resume:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["opt"])
        step, wall = resume["step"], resume["wall"]
        set_rng_state(gen, resume["rng"])
        g_noise.set_state(resume["rng_noise"])
        print(f"resumed {path} at step {step}")
    log = Log(args.out, name, step if resume else None)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {n_params / 1e6:.3f}M parameters, planner layers {layers}, {train_split.n} train / "
          f"{val_split.n} val plans, {config}", flush=True)  # fmt: skip

    unet, scale = den.unet, den.scaling_factor
    ac = den.alphas_cumprod
    snr = ac / (1 - ac)
    weight = snr.clamp(max=config["snr_gamma"]) / snr

    def eps_loss(z, tokens, pooled, t, noise):
        a = ac[t][:, None, None, None]
        eps = unet(a.sqrt() * z + (1 - a).sqrt() * noise, t.float(), tokens, pooled)
        return weight[t] * (eps - noise).pow(2).mean(dim=(1, 2, 3))

    # A fixed validation problem, so the losses are comparable over time and across runs; the native text
    # encoder on the same images' captions is the reference the projection should reach.
    g_val = torch.Generator().manual_seed(1234)
    val_idx = np.arange(val_split.n)
    val_z = val_split.sample_latents(val_idx, g_val, scale, device)
    val_t = torch.linspace(0, len(ac) - 1, len(val_idx)).long().to(device)
    val_noise = torch.randn(val_z.shape, generator=g_val).to(device)
    val_captions = [r["captions"][0] for r in val_split.records]

    @torch.no_grad()
    def evaluate():
        model.eval()
        out = {"val_loss": [], "val_null": [], "val_native": []}
        for i in range(0, len(val_idx), 64):
            sl = slice(i, i + 64)
            h, slots, mask = val_split.batch(val_idx[sl], layers, device)
            tokens, pooled = model(h, slots, mask)
            b = len(tokens)
            ids = torch.from_numpy(den.tokenizer.encode(val_captions[sl])).to(device)
            native = den.text(ids)
            for key, (c, p) in (("val_loss", (tokens, pooled)), ("val_native", native),
                                ("val_null", (model.null_tokens.expand(b, -1, -1), model.null_pooled.expand(b, -1)))):
                out[key].append(eps_loss(val_z[sl], c, p, val_t[sl], val_noise[sl]))  # fmt: skip
        model.train()
        return {k: torch.cat(v).mean().item() for k, v in out.items()}

    data = dict(root=args.data, n=train_split.n, seed=train_split.shards.index.get("seed"))

    def state(val):
        return dict(config=config, model=model.state_dict(), opt=opt.state_dict(), step=step, wall=progress.wall,
                    rng=rng_state(gen), rng_noise=g_noise.get_state(), models=models, seed=args.seed, val=val,
                    params=n_params, data=data, init=args.init or (resume or {}).get("init"))  # fmt: skip

    model.train()
    progress = Progress(log, wall)
    budget = Budget(args.minutes)
    while step < config["steps"]:
        budget.check(step, config)
        idx = np.sort(gen.integers(0, train_split.n, config["batch"]))
        h, slots, mask = train_split.batch(idx, layers, device)
        z = train_split.sample_latents(idx, g_noise, scale, device)
        t = torch.randint(0, len(ac), (len(idx),), generator=g_noise).to(device)
        noise = torch.randn(z.shape, generator=g_noise).to(device)
        drop = torch.from_numpy(gen.random(len(idx)) < config["cond_drop"]).to(device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, config)
        tokens, pooled = model(h, slots, mask)
        loss = eps_loss(z, torch.where(drop[:, None, None], model.null_tokens, tokens),
                        torch.where(drop[:, None], model.null_pooled, pooled), t, noise).mean()  # fmt: skip
        aux = torch.zeros(())
        if config["aux_weight"] > 0 and not drop.all():
            target = train_split.aux[idx].to(device)
            keep = ~drop
            aux = F.mse_loss(pooled[keep], target[keep, 0]) + F.mse_loss(tokens[keep].mean(1), target[keep, 1])
        opt.zero_grad(set_to_none=True)
        (loss + config["aux_weight"] * aux).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        progress.step(step, config, loss=loss.item(), aux=aux.item())
        if step % config["eval_every"] == 0 or step == config["steps"]:
            val = evaluate()
            log.write(step=step, **val, mix=[round(x, 4) for x in model.mix_weights().tolist()])
            log.plot(["loss", "val_loss", "val_native", "val_null"], f"{name} (ε-MSE, min-SNR weighted)")
            progress.pause()
            save_checkpoint(path, state(val))
            progress.resume()


class ProjectionGraph(nn.Module):
    """hidden_states [k,S,d_llm] (+ slot_ids [S]) → encoder_hidden_states [1,M,d], text_embeds [1,d] and the
    null pair."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, hidden_states, slot_ids=None):
        tokens, pooled = self.model(hidden_states[None], None if slot_ids is None else slot_ids[None])
        return tokens, pooled, self.model.null_tokens[None], self.model.null_pooled[None]


def summary(t):
    a = t.detach().double().numpy().ravel()
    return {"dims": list(t.shape), "head": [float(v) for v in a[:16]], "mean": float(a.mean()),
            "meanAbs": float(np.abs(a).mean())}  # fmt: skip


def export(args):
    name = args.name or f"projection-{args.config}"
    ckpt = torch.load(os.path.join(args.out, "checkpoints", f"{name}.pt"), map_location="cpu")
    config, models = ckpt["config"], ckpt["models"]
    for which in ("planner", "denoiser"):
        m = models[which]
        path = os.path.join(m["folder"], m["file"])
        if not os.path.exists(path) or file_sha256(path) != m["sha256"]:
            raise SystemExit(f"{path} is not the {which} {name} was trained for (sha256 {m['sha256'][:12]}…); "
                             "train the projection again")  # fmt: skip
    model = Projection(**config)
    model.load_state_dict(ckpt["model"])
    model.eval()
    dest = args.dest
    os.makedirs(dest, exist_ok=True)
    graph = ProjectionGraph(model)
    k, d_llm = config["k"], config["d_llm"]
    onnx_path = os.path.join(dest, "model.onnx")
    slots = config.get("slots", 0)
    inputs = (torch.randn(k, 5, d_llm),) + ((torch.tensor([0, 1, 1, 0, 2]),) if slots else ())
    input_names = ["hidden_states"] + (["slot_ids"] if slots else [])
    axes = {"hidden_states": {1: "plan_length"}} | ({"slot_ids": {0: "plan_length"}} if slots else {})
    torch.onnx.export(graph, inputs, onnx_path, input_names=input_names,
                      output_names=["encoder_hidden_states", "text_embeds", "null_encoder_hidden_states",
                                    "null_text_embeds"],
                      dynamic_axes=axes,
                      opset_version=OPSET, do_constant_folding=False)  # fmt: skip
    onnx.checker.check_model(onnx.load(onnx_path), full_check=True)

    # Reference outputs from the planner's hidden states as computed here: the TypeScript runtime must get
    # the same numbers through planner.ts (chat template, tokenizer, ONNX graph) and the projection graph.
    planner, vocab = load_planner(models["planner"]["folder"])
    names = ["encoder_hidden_states", "text_embeds", "null_encoder_hidden_states", "null_text_embeds"]
    cases = []
    for example in EXAMPLES:
        states = plan_states(planner, vocab, [example["messages"]], [example["plan"]], "cpu")[0]
        hidden = torch.from_numpy(states[:, config["layers_used"]].transpose(1, 0, 2).copy())
        with torch.no_grad():
            outputs = graph(hidden, torch.tensor(plan_slots(example["plan"], slots)) if slots else None)
        cases.append(dict(messages=[dict(role=r, content=c) for r, c in example["messages"]], plan=example["plan"],
                          outputs={n: summary(o) for n, o in zip(names, outputs)}))  # fmt: skip
    with open(os.path.join(dest, "reference.json"), "w") as f:
        json.dump({"cases": cases}, f)
        f.write("\n")
    manifest = {
        "format": "atelier-projection-v1",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "d_llm": d_llm, "d_cond": config["d_cond"], "M": config["M"], "k": k,
        "plan_blocks": config.get("plan_blocks", 0), "slots": slots,
        "object_queries": config.get("object_queries", 0),
        "layers": config["layers_used"], "layer_choice": config["layers"],
        "mix_weights": [round(x, 6) for x in model.mix_weights().tolist()],
        "inputs": {"hidden_states": ["k", "plan_length", "d_llm"]} | ({"slot_ids": ["plan_length"]} if slots else {}),
        "outputs": {"encoder_hidden_states": [1, "M", "d_cond"], "text_embeds": [1, "d_cond"],
                    "null_encoder_hidden_states": [1, "M", "d_cond"], "null_text_embeds": [1, "d_cond"]},
        "planner": {k_: models["planner"][k_] for k_ in ("file", "sha256", "hidden_size", "num_hidden_layers")}
        | {"name": os.path.basename(os.path.normpath(models["planner"]["folder"]))},
        "denoiser": {k_: models["denoiser"][k_] for k_ in ("file", "sha256", "cross_attention_dim")}
        | {"name": os.path.basename(os.path.normpath(models["denoiser"]["folder"]))},
        "training": {"strategy": "A (planner and denoiser frozen)", "steps": ckpt["step"],
                     "wall_s": round(ckpt["wall"], 1), "seed": ckpt["seed"], "config": args.config,
                     "init": ckpt.get("init"),
                     "batch": config["batch"], "lr": config["lr"], "cond_drop": config["cond_drop"],
                     "aux_weight": config["aux_weight"], "data": ckpt["data"], "parameters": ckpt["params"],
                     "val": {k_: round(v, 5) for k_, v in ckpt["val"].items()}},
        "files": {n: {"sha256": file_sha256(os.path.join(dest, n)), "bytes": os.path.getsize(os.path.join(dest, n))}
                  for n in ("model.onnx", "reference.json")},
    }  # fmt: skip
    with open(os.path.join(dest, "projection.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"exported {name} (step {ckpt['step']}, val {ckpt['val']}) → {dest}")


def main():
    p = parser(__doc__.split("\n")[0], CONFIGS)
    p.add_argument("command", choices=["precompute", "train", "export"])
    p.add_argument("--planner", default="models/planner", help="transformers.js folder of the frozen planner")
    p.add_argument("--denoiser", default="models/ldm", help="diffusers ONNX folder of the frozen denoiser")
    p.add_argument("--name", help="checkpoint/log name (default projection-CONFIG); ablations use their own")
    p.add_argument("--n", type=int, help="use the first N training records")
    p.add_argument("--layers", help="last | mix (top-k) | comma list of planner layers (0 = embeddings)")
    p.add_argument("--top-k", dest="top_k", type=int)
    p.add_argument("--M", type=int, help="number of conditioning tokens (learned queries)")
    p.add_argument("--plan-blocks", dest="plan_blocks", type=int, help="transformer blocks over the plan span")
    p.add_argument("--slots", type=int, help="object slot embeddings (0: none; ids above slots-1 share the last)")
    p.add_argument("--object-queries", dest="object_queries", type=int, help="queries per object slot (0: none)")
    p.add_argument("--aux-weight", dest="aux_weight", type=float, help="λ of the native-encoder alignment")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the config's)")
    p.add_argument("--init", metavar="CKPT", help="train: start from the weights of projection checkpoint CKPT")
    p.add_argument("--dest", default="models/projection", help="export folder")
    p.set_defaults(data="data/projection/train", val="data/projection/val")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    {"precompute": precompute, "train": train, "export": export}[args.command](args)


if __name__ == "__main__":
    main()
