"""Native text encoder + latent denoiser, trained jointly on captions (the LDM recipe: τθ and εθ together).

Text encoder: word-level tokenizer built from the training captions (HF tokenizer.json), a small pre-LN
transformer → token states [L×d] + pooled vector [d]. An all-padding (empty) input maps to a learned null
embedding (tokens and pooled): that is the classifier-free-guidance null, trained by replacing the caption
with the empty string `cond_drop` of the time.

Denoiser: U-Net on the VAE's scaled 8×8×4 latents, two levels (8×8 and 4×4). ResBlocks are modulated
(AdaGN: scale and shift) by the timestep embedding plus a projection of the pooled text vector (SDXL's
`text_embeds`); every block is followed by a transformer block with self-attention and cross-attention to
the text tokens. ε-prediction on Stable Diffusion's schedule: `scaled_linear` betas 0.00085 → 0.012 over
1000 steps; the loss is weighted by min(SNR, 5) / SNR (min-SNR-γ, Hang et al. 2023) for faster convergence.
AdamW, linear warm-up + cosine decay, gradient clipping at 1.0, EMA of the weights (the EMA is exported).

After export, training/text_encoder.py tunes the text encoder alone on what people write (U-Net and null frozen).

    /usr/bin/python3 training/ldm.py --data data/train --val data/val [--vae training/checkpoints/vae-default.pt]
"""

import os

# Idle OpenMP threads must sleep, not spin: on 2 cores shared with other jobs, spinning made a step 40× slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from data import Shards, WordTokenizer, file_sha256, latent_cache, sample_latents
from util import (EMA, Budget, Log, Progress, device_name, load_checkpoint, lr_at, parser, rng_state,
                  save_checkpoint, set_rng_state, setup)
from vae import load_vae, save_grid

CONFIGS = {
    "default": dict(max_length=48, d_cond=128, text_layers=3, text_heads=4, channels=(64, 128), blocks=1,
                    heads=4, d_emb=256, num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                    snr_gamma=5.0, cond_drop=0.12, unk_drop=0.03, batch=32, steps=12000, lr=6e-4, warmup=300,
                    weight_decay=0.01, ema=0.999, log_every=50, eval_every=1000, n_eval=512, guidance=5.0),
    # gpu: the default network at batch 256 on a lent GPU (training/gpu.sh), the step count set by --minutes.
    "gpu": dict(max_length=48, d_cond=128, text_layers=3, text_heads=4, channels=(64, 128), blocks=1,
                heads=4, d_emb=256, num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                snr_gamma=5.0, cond_drop=0.12, unk_drop=0.03, batch=256, steps=100000, lr=1e-3, warmup=500,
                weight_decay=0.01, ema=0.9995, log_every=100, eval_every=2500, n_eval=512, guidance=5.0),
    "tiny": dict(max_length=48, d_cond=32, text_layers=1, text_heads=2, channels=(16, 32), blocks=1,
                 heads=2, d_emb=64, num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                 snr_gamma=5.0, cond_drop=0.12, unk_drop=0.03, batch=8, steps=20, lr=1e-3, warmup=5,
                 weight_decay=0.01, ema=0.99, log_every=5, eval_every=10, n_eval=16, guidance=5.0),
}  # fmt: skip
# gpu-more: the released weights trained further on a lent GPU (`--init`, training/gpu.sh with LDM_INIT), so the
# architecture stays gpu's. The gpu run took 73 ms a step at batch 256 on an H100, about what a step of this
# small network costs in kernel launches alone, so four times the batch should cost little more per step; a
# lower peak rate, as the weights start trained.
CONFIGS["gpu-more"] = dict(CONFIGS["gpu"], batch=1024, lr=5e-4, warmup=200, ema=0.999, eval_every=1000)
ARCH_KEYS = ("max_length", "d_cond", "text_layers", "text_heads", "channels", "blocks", "heads", "d_emb",
             "num_train_timesteps", "beta_start", "beta_end")


class Attention(nn.Module):
    """Multi-head attention written with matmul + softmax (torch 1.13 has no fused SDPA)."""

    def __init__(self, d, heads, d_ctx=None):
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d_ctx or d, d, bias=False)
        self.v = nn.Linear(d_ctx or d, d, bias=False)
        self.out = nn.Linear(d, d)

    def forward(self, x, ctx=None, bias=None):
        ctx = x if ctx is None else ctx
        b = x.shape[0]
        q, k, v = (t.reshape(b, -1, self.heads, self.dh).transpose(1, 2) for t in (self.q(x), self.k(ctx), self.v(ctx)))
        w = (q @ k.transpose(-1, -2)) * self.dh**-0.5
        if bias is not None:
            w = w + bias
        return self.out((w.softmax(-1) @ v).transpose(1, 2).reshape(b, -1, self.heads * self.dh))


class GEGLU(nn.Module):
    def __init__(self, d, mult=4):
        super().__init__()
        self.proj = nn.Linear(d, d * mult)
        self.out = nn.Linear(d * mult // 2, d)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(a * F.gelu(gate))


class TextBlock(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(d), Attention(d, heads)
        self.ln2, self.ff = nn.LayerNorm(d), GEGLU(d)

    def forward(self, x, bias):
        x = x + self.attn(self.ln1(x), bias=bias)
        return x + self.ff(self.ln2(x))


class TextEncoder(nn.Module):
    """input_ids [B,L] → (last_hidden_state [B,L,d], pooler_output [B,d]); all-padding → learned null."""

    def __init__(self, vocab_size, pad_id, max_length, d_cond, text_layers, text_heads, **_):
        super().__init__()
        self.pad_id = pad_id
        self.tok = nn.Embedding(vocab_size, d_cond)
        self.pos = nn.Parameter(torch.randn(max_length, d_cond) * 0.02)
        self.blocks = nn.ModuleList(TextBlock(d_cond, text_heads) for _ in range(text_layers))
        self.norm = nn.LayerNorm(d_cond)
        self.pool = nn.Linear(d_cond, d_cond)
        self.null_tokens = nn.Parameter(torch.randn(max_length, d_cond))
        self.null_pooled = nn.Parameter(torch.zeros(d_cond))

    def forward(self, ids):
        keep = (ids != self.pad_id).float()
        # -1e4 rather than -inf: an all-padding row must stay finite (its output is replaced by the null).
        bias = ((1 - keep) * -1e4)[:, None, None, :]
        h = self.tok(ids) + self.pos[: ids.shape[1]]
        for block in self.blocks:
            h = block(h, bias)
        h = self.norm(h)
        n = keep.sum(1, keepdim=True)
        pooled = self.pool((h * keep[..., None]).sum(1) / n.clamp_min(1))
        empty = n == 0
        h = torch.where(empty[..., None], self.null_tokens[: ids.shape[1]], h)
        return h, torch.where(empty, self.null_pooled, pooled)


def norm(c):
    return nn.GroupNorm(math.gcd(32, c), c)


class ResBlock(nn.Module):
    """AdaGN: the second normalisation is scaled and shifted by the (timestep + pooled text) embedding."""

    def __init__(self, cin, cout, d_emb):
        super().__init__()
        self.norm1, self.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(d_emb, 2 * cout)
        self.norm2, self.conv2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class SpatialTransformer(nn.Module):
    def __init__(self, c, d_cond, heads):
        super().__init__()
        self.norm, self.proj_in = norm(c), nn.Linear(c, c)
        self.ln1, self.attn1 = nn.LayerNorm(c), Attention(c, heads)
        self.ln2, self.attn2 = nn.LayerNorm(c), Attention(c, heads, d_cond)
        self.ln3, self.ff = nn.LayerNorm(c), GEGLU(c)
        self.proj_out = nn.Linear(c, c)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x, ctx):
        h = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))
        h = h + self.attn1(self.ln1(h))
        h = h + self.attn2(self.ln2(h), ctx)
        h = h + self.ff(self.ln3(h))
        return x + self.proj_out(h).transpose(1, 2).reshape(x.shape)


class Stage(nn.Module):
    """`blocks` × (ResBlock → SpatialTransformer); the first ResBlock takes `cin` channels."""

    def __init__(self, cin, cout, blocks, d_emb, d_cond, heads):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(cin if i == 0 else cout, cout, d_emb) for i in range(blocks))
        self.attn = nn.ModuleList(SpatialTransformer(cout, d_cond, heads) for _ in range(blocks))

    def forward(self, h, emb, ctx):
        for res, attn in zip(self.res, self.attn):
            h = attn(res(h, emb), ctx)
        return h


def timestep_embedding(t, dim):
    """Sinusoidal embedding as diffusers' Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


class UNet(nn.Module):
    """(sample [B,4,8,8], timestep [B], encoder_hidden_states [B,S,d], text_embeds [B,d]) → ε [B,4,8,8]."""

    def __init__(self, channels, blocks, heads, d_emb, d_cond, latent=4, **_):
        super().__init__()
        c0, c1 = channels
        self.c0 = c0
        self.time = nn.Sequential(nn.Linear(c0, d_emb), nn.SiLU(), nn.Linear(d_emb, d_emb))
        self.text = nn.Linear(d_cond, d_emb)
        self.conv_in = nn.Conv2d(latent, c0, 3, padding=1)
        self.down0 = Stage(c0, c0, blocks, d_emb, d_cond, heads)
        self.downsample = nn.Conv2d(c0, c0, 3, stride=2, padding=1)
        self.down1 = Stage(c0, c1, blocks, d_emb, d_cond, heads)
        self.mid = Stage(c1, c1, 1, d_emb, d_cond, heads)
        self.mid_res = ResBlock(c1, c1, d_emb)
        self.up1 = Stage(2 * c1, c1, blocks, d_emb, d_cond, heads)
        self.upsample = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c1, c1, 3, padding=1))
        self.up0 = Stage(c1 + c0, c0, blocks, d_emb, d_cond, heads)
        self.out = nn.Sequential(norm(c0), nn.SiLU(), nn.Conv2d(c0, latent, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x, t, ctx, pooled):
        emb = F.silu(self.time(timestep_embedding(t, self.c0)) + self.text(pooled))
        s0 = self.down0(self.conv_in(x), emb, ctx)
        s1 = self.down1(self.downsample(s0), emb, ctx)
        h = self.mid_res(self.mid(s1, emb, ctx), emb)
        h = self.upsample(self.up1(torch.cat([h, s1], 1), emb, ctx))
        return self.out(self.up0(torch.cat([h, s0], 1), emb, ctx))


class LDM(nn.Module):
    def __init__(self, config, vocab_size, pad_id):
        super().__init__()
        self.text = TextEncoder(vocab_size, pad_id, **config)
        self.unet = UNet(**config)

    def forward(self, x, t, ids):
        ctx, pooled = self.text(ids)
        return self.unet(x, t, ctx, pooled)


def alphas_cumprod(config):
    """diffusers' `scaled_linear` schedule."""
    betas = torch.linspace(config["beta_start"] ** 0.5, config["beta_end"] ** 0.5, config["num_train_timesteps"]) ** 2
    return torch.cumprod(1 - betas, dim=0)


def load_ldm(path, ema=True):
    ckpt = load_checkpoint(path)
    tok = WordTokenizer(ckpt["tokenizer"]["vocab"], ckpt["tokenizer"]["max_length"])
    model = LDM(ckpt["config"], len(tok.vocab), tok.pad_id)
    model.load_state_dict(ckpt["ema" if ema else "model"])
    return model.eval(), tok, ckpt


@torch.no_grad()
def sample(model, tok, captions, config, scale, decoder, steps=20, seed=0):
    """DDIM (η = 0, "leading" spacing, steps_offset 1, set_alpha_to_one False) with classifier-free guidance."""
    device = next(model.parameters()).device
    ac = alphas_cumprod(config).to(device)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(captions), 4, 8, 8, generator=g).to(device)
    ctx, pooled = model.text(torch.from_numpy(tok.encode(list(captions) + [""] * len(captions))).to(device))
    ratio = config["num_train_timesteps"] // steps
    for t in reversed(range(1, config["num_train_timesteps"], ratio)):
        tt = torch.full((2 * len(captions),), float(t), device=device)
        eps_c, eps_u = model.unet(torch.cat([x, x]), tt, ctx, pooled).chunk(2)
        eps = eps_u + config["guidance"] * (eps_c - eps_u)
        a, a_prev = ac[t], ac[t - ratio] if t - ratio >= 0 else ac[0]
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return decoder(x / scale).clamp(-1, 1)


class Captions:
    """Every text of every image (`texts`: a list per image) tokenized once; `pick` draws one text per image,
    replaced by the empty text (the CFG null) with probability `drop`, and with each word replaced by [UNK] with
    probability `unk` so that words the tokenizer does not know are ignored rather than derail the conditioning."""

    def __init__(self, texts, tok):
        self.count = np.array([len(t) for t in texts])
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]])
        self.ids = tok.encode([t for ts in texts for t in ts])
        self.empty = tok.encode([""])[0]
        self.pad_id, self.unk_id = tok.pad_id, tok.unk_id

    def pick(self, idx, gen, drop, unk, insert=0):
        ids = self.ids[self.start[idx] + (gen.random(len(idx)) * self.count[idx]).astype(np.int64)]
        ids[(ids != self.pad_id) & (gen.random(ids.shape) < unk)] = self.unk_id
        for row in np.flatnonzero(gen.integers(0, insert + 1, len(idx))) if insert else ():
            # Up to `insert` unknown words at random places, as a prompt in words the tokenizer never saw has.
            words = list(ids[row][ids[row] != self.pad_id])
            for _ in range(gen.integers(1, insert + 1)):
                words.insert(int(gen.integers(0, len(words) + 1)), self.unk_id)
            ids[row, : min(len(words), ids.shape[1])] = words[: ids.shape[1]]
        ids[gen.random(len(idx)) < drop] = self.empty
        return ids


def adamw(model, config, device):
    """AdamW over the trainable parameters of `model` (an LDM or a text encoder), and those parameters: weight
    decay on the matrices, none on biases, norms, position embeddings and the learned null."""
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 and "null" not in n and "pos" not in n else no_decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config["lr"],
        betas=(0.9, 0.99),
        # One kernel for the whole update on a GPU (PyTorch ≥ 2.0; the Debian 1.13 has no `fused`).
        **({"fused": True} if device.type == "cuda" else {}),
    )
    return opt, [p for p in model.parameters() if p.requires_grad]


def main():
    p = parser(__doc__.split("\n")[0], CONFIGS)
    p.add_argument("--vae", help="VAE checkpoint (default: OUT/checkpoints/vae-CONFIG.pt)")
    p.add_argument("--init", metavar="CKPT",
                   help="start from the EMA weights and tokenizer of LDM checkpoint CKPT (a new schedule continues it)")
    args = p.parse_args()
    config = dict(CONFIGS[args.config])
    device = setup(args, config)
    name = f"ldm-{args.config}"
    path = f"{args.out}/checkpoints/{name}.pt"
    vae_path = args.vae or f"{args.out}/checkpoints/vae-{args.config}.pt"
    vae, vae_ckpt = load_vae(vae_path, device)
    scale = vae_ckpt["scaling_factor"]
    train, val = Shards(args.data), Shards(args.val)
    resume = load_checkpoint(path) if args.resume else None
    init = load_checkpoint(args.init) if args.init and not resume else None
    if init and init["vae"]["scaling_factor"] != scale:
        # A decoder fine-tune keeps the factor; another encoder measures its own: its latents are not init's.
        raise SystemExit(f"--init {args.init}: trained on latents with scaling factor {init['vae']['scaling_factor']}, "
                         f"{vae_path} has {scale}")
    if init:  # a continuation keeps the network it continues
        config.update({k: init["config"][k] for k in ARCH_KEYS})
    if resume or init:
        saved = (resume or init)["tokenizer"]
        tok = WordTokenizer(saved["vocab"], saved["max_length"])
    else:
        tok = WordTokenizer.build([t for ts in train.texts() for t in ts], config["max_length"])
    train_lat = latent_cache(train, vae.encoder, vae_path, args.out, device)
    val_lat = latent_cache(val, vae.encoder, vae_path, args.out, device)
    train_caps, val_caps = Captions(train.texts(), tok), Captions(val.texts(), tok)

    model = LDM(config, len(tok.vocab), tok.pad_id).to(device)
    ema = EMA(model, config["ema"])
    opt, trainable = adamw(model, config, device)
    gen = np.random.default_rng(args.seed)
    step, wall = 0, 0.0
    # The run this one continues (--init), for the manifest: its steps and wall time are not counted here.
    source = resume.get("source") if resume else None
    if init:
        model.load_state_dict(init["ema"])
        ema.model.load_state_dict(init["ema"])
        source = dict(file=os.path.basename(args.init), steps=init["step"], wall_s=round(init["wall"], 1),
                      device=init.get("device"), val_loss=round(init["val_loss"], 5))
        if "source" in init:
            source["continued_from"] = init["source"]
        print(f"starting from {args.init} (step {init['step']}, val_loss {init['val_loss']:.5f})")
    if resume:
        model.load_state_dict(resume["model"])
        ema.model.load_state_dict(resume["ema"])
        opt.load_state_dict(resume["opt"])
        step, wall = resume["step"], resume["wall"]
        set_rng_state(gen, resume["rng"])
        print(f"resumed {path} at step {step}")
    log = Log(args.out, name, step if resume else None)
    n_text = sum(p_.numel() for p_ in model.text.parameters())
    n_unet = sum(p_.numel() for p_ in model.unet.parameters())
    print(f"{name}: text encoder {n_text / 1e6:.3f}M, U-Net {n_unet / 1e6:.3f}M parameters, vocabulary "
          f"{len(tok.vocab)}, {len(train)} train / {len(val)} val images, latent scale {scale:.4f}, {config}")  # fmt: skip

    ac = alphas_cumprod(config).to(device)
    snr = ac / (1 - ac)
    weight = snr.clamp(max=config["snr_gamma"]) / snr

    def denoising_loss(net, z, ids, t, noise):
        a = ac[t][:, None, None, None]
        eps = net(a.sqrt() * z + (1 - a).sqrt() * noise, t.float(), torch.from_numpy(ids).to(device))
        return (weight[t] * (eps - noise).pow(2).mean(dim=(1, 2, 3))).mean()

    # A fixed validation problem (latents, captions, timesteps, noise) so its loss is comparable over time.
    g_val = torch.Generator().manual_seed(1234)
    val_idx = np.arange(min(config["n_eval"], len(val)))
    val_z = sample_latents(val_lat, val_idx, g_val, scale, device)
    val_ids = val_caps.ids[val_caps.start[val_idx]]
    val_t = torch.linspace(0, config["num_train_timesteps"] - 1, len(val_idx)).long().to(device)
    val_noise = torch.randn(val_z.shape, generator=g_val).to(device)
    preview = [c[0] for c in val.captions()[:8]]

    g_noise = torch.Generator().manual_seed(args.seed)
    if resume:
        g_noise.set_state(resume["rng_noise"])
    progress = Progress(log, wall)
    budget = Budget(args.minutes)
    while step < config["steps"]:
        budget.check(step, config)
        idx = np.sort(gen.integers(0, len(train), config["batch"]))
        z = sample_latents(train_lat, idx, g_noise, scale, device)
        ids = train_caps.pick(idx, gen, config["cond_drop"], config["unk_drop"])
        t = torch.randint(0, config["num_train_timesteps"], (len(idx),), generator=g_noise).to(device)
        noise = torch.randn(z.shape, generator=g_noise).to(device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, config)
        loss = denoising_loss(model, z, ids, t, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        ema.update(model, step)
        step += 1
        progress.step(step, config, loss=loss.item())
        if step % config["eval_every"] == 0 or step == config["steps"]:
            with torch.no_grad():
                val_loss = denoising_loss(ema.model, val_z, val_ids, val_t, val_noise).item()
            log.write(step=step, val_loss=val_loss)
            log.plot(["loss", "val_loss"], f"{name} (ε-MSE, min-SNR weighted)")
            images = sample(ema.model, tok, preview * 2, config, scale, vae.decoder, seed=step)
            save_grid(images, f"{args.out}/logs/{name}-samples.png", rows=2)
            progress.pause()
            state = dict(config=config, tokenizer=tok.state(), model=model.state_dict(), ema=ema.model.state_dict(),
                         opt=opt.state_dict(), step=step, wall=progress.wall, device=device_name(device), rng=rng_state(gen),
                         rng_noise=g_noise.get_state(),
                         params=dict(text_encoder=n_text, unet=n_unet), val_loss=val_loss, seed=args.seed,
                         vae=dict(path=vae_path, sha256=file_sha256(vae_path), scaling_factor=scale),
                         data=dict(split=train.index.get("split"), seed=train.index.get("seed"), n=len(train)))  # fmt: skip
            if source:
                state["source"] = source
            save_checkpoint(path, state)
            progress.resume()


if __name__ == "__main__":
    main()
