"""Tunes the native text encoder of an exported LDM folder (training/export.py) on what people write, and writes
it back into the folder; the U-Net, the VAE and the learned null stay bit for bit as they were, so the
projection layers and everything after them are unaffected: only prompts through the text encoder change.

The texts are training/text-set.ts's: chat requests, which leave attributes out, and edit dialogues joined into
one prompt, each paired with the image of the scene it asks for. The encoder is distilled in the denoiser's
output space: under the student's reading of the text, the frozen U-Net must predict what it predicts under
the folder's own encoder (the teacher) given the image's full caption, where every attribute is stated. The
plain denoising loss teaches little of it (an unstated background came out as the noise chose): a background
is decided at high noise, where the image moves the ε target by √ᾱ·Δx₀ under noise of variance 1, while the
teacher's prediction is a target without that noise; the loss is in x₀ units (weight 1/SNR, capped), so the
decisions made at high noise count as much as the rest.

The vocabulary grows by the words of the texts the folder's tokenizer lacks (edit verbs, "somewhere", …); they
start as [UNK], which the encoder learned to pass over. People's words outside the world's attributes are many
and open-ended ("a snapshot of a circle plus a star", "backdrop", "bathed in"), and every one a tokenizer never
saw reads as [UNK]: so a quarter of the words outside the attribute list (DIR/content-words.json) are read as
[UNK] and up to 3 [UNK] are inserted into most texts, while attribute words are rarely dropped (their loss makes
the target unpredictable). The encoder gets `extra_layers` more blocks than the teacher's, their residual
branches zero at the start (the student starts as the teacher), for the edits it now has to apply.

    npx tsx training/text-set.ts --n 60000 --seed 1 --out data/text-train
    npx tsx training/text-set.ts --n 1000 --seed 2 --out data/text-val
    /usr/bin/python3 training/text_encoder.py --model models/ldm --data data/text-train --val data/text-val
    /usr/bin/python3 training/text_encoder.py --model models/ldm --export   # the last checkpoint → the folder
"""

import os

# Idle OpenMP threads must sleep, not spin: on 2 cores shared with other jobs, spinning made a step 40× slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import copy
import json

import numpy as np
import torch

from data import Shards, WordTokenizer, file_sha256, latent_cache, sample_latents
from export import TEXT_ENCODER_IO, TextEncoderGraph, export, write_json
from frozen import Denoiser, read_json
from ldm import Captions, TextEncoder, adamw
from util import (EMA, Budget, Log, Progress, device_name, load_checkpoint, lr_at, parser, rng_state,
                  save_checkpoint, set_rng_state, setup)

# unk_other / unk_content: the chance that a word outside / inside the world's attribute words is read as [UNK].
CONFIGS = {
    "default": dict(batch=128, steps=3500, lr=5e-4, warmup=100, weight_decay=0.01, ema=0.998, extra_layers=3,
                    unk_other=0.25, unk_content=0.02, unk_insert=3, x0_weight_cap=20.0, log_every=25,
                    eval_every=250, n_eval=512),
    "tiny": dict(batch=8, steps=10, lr=1e-3, warmup=2, weight_decay=0.01, ema=0.9, extra_layers=1, unk_other=0.25,
                 unk_content=0.02, unk_insert=3, x0_weight_cap=20.0, log_every=5, eval_every=5, n_eval=16),
}  # fmt: skip
NAME = "text-encoder"


def grown_tokenizer(teacher, texts):
    """The teacher's vocabulary (same ids) followed by the new words of `texts`, in sorted order."""
    words = sorted({w for t in texts for w in teacher.words(t)} - set(teacher.vocab))
    vocab = dict(teacher.vocab) | {w: len(teacher.vocab) + i for i, w in enumerate(words)}
    return WordTokenizer(vocab, teacher.max_length)


def student_of(teacher, tok, extra_layers):
    """The teacher with embedding rows for the new words, each a copy of [UNK]'s, and `extra_layers` blocks after
    its own whose residual branches output zero: the same function, more room."""
    old = teacher.tok.weight.shape[0]
    student = TextEncoder(len(tok.vocab), tok.pad_id, tok.max_length, teacher.tok.weight.shape[1],
                          len(teacher.blocks) + extra_layers, teacher.blocks[0].attn.heads)  # fmt: skip
    for block in student.blocks[len(teacher.blocks) :]:
        for out in (block.attn.out, block.ff.out):
            torch.nn.init.zeros_(out.weight)
            torch.nn.init.zeros_(out.bias)
    state = student.state_dict() | teacher.state_dict()
    unk = state["tok.weight"][tok.unk_id]
    state["tok.weight"] = torch.cat([state["tok.weight"], unk.expand(len(tok.vocab) - old, -1)])
    student.load_state_dict(state)
    student.null_tokens.requires_grad_(False)
    student.null_pooled.requires_grad_(False)
    return student


def train(args, config, device):
    frozen = Denoiser(args.model, device)
    teacher, unet = frozen.text.eval().requires_grad_(False), frozen.unet.eval().requires_grad_(False)
    train_set, val_set = Shards(args.data), Shards(args.val)
    texts = [r["texts"] for r in train_set.records]
    path = f"{args.out}/checkpoints/{NAME}.pt"
    resume = load_checkpoint(path) if args.resume else None
    teacher_sha = file_sha256(os.path.join(args.model, "text_encoder", "model.onnx"))
    if resume and resume["teacher_sha256"] != teacher_sha:
        raise SystemExit(f"{path} was distilled from another text encoder than {args.model}'s")
    tok = grown_tokenizer(frozen.tokenizer, [t for ts in texts for t in ts])
    if resume and resume["tokenizer"]["vocab"] != tok.vocab:
        raise SystemExit(f"{path} was trained with another vocabulary: train from the start")
    with open(os.path.join(args.data, "content-words.json")) as f:
        content = {tok.vocab[w] for w in json.load(f) if w in tok.vocab}
    unk_chance = np.full(len(tok.vocab), config["unk_other"])
    unk_chance[list(content)] = config["unk_content"]
    unk_chance[[tok.pad_id, tok.unk_id]] = 0.0
    train_caps, val_caps = Captions(texts, tok), Captions([r["texts"] for r in val_set.records], tok)
    # Validation reads each image's first request (a dialogue's only text; after two captions otherwise).
    val_caps.start += np.minimum(2, val_caps.count - 1)
    train_full, val_full = (frozen.tokenizer.encode([c[0] for c in s.captions()]) for s in (train_set, val_set))
    encoder_file = os.path.join(args.model, "vae_encoder", "model.onnx")
    train_lat = latent_cache(train_set, frozen.vae_encoder, encoder_file, args.out, device)
    val_lat = latent_cache(val_set, frozen.vae_encoder, encoder_file, args.out, device)

    student = student_of(teacher, tok, config["extra_layers"]).to(device)
    ema = EMA(student, config["ema"])
    opt, trainable = adamw(student, config, device)
    gen = np.random.default_rng(args.seed)
    g_noise = torch.Generator().manual_seed(args.seed)
    step, wall = 0, 0.0
    if resume:
        student.load_state_dict(resume["model"])
        ema.model.load_state_dict(resume["ema"])
        opt.load_state_dict(resume["opt"])
        step, wall = resume["step"], resume["wall"]
        set_rng_state(gen, resume["rng"])
        g_noise.set_state(resume["rng_noise"])
        print(f"resumed {path} at step {step}")
    log = Log(args.out, NAME, step if resume else None)
    print(f"{NAME}: {sum(p.numel() for p in student.parameters()) / 1e6:.3f}M parameters, vocabulary "
          f"{len(frozen.tokenizer.vocab)} → {len(tok.vocab)}, {len(train_set)} train / {len(val_set)} val images, {config}")  # fmt: skip

    ac = frozen.alphas_cumprod
    snr = ac / (1 - ac)
    x0_weight = (1 / snr).clamp(max=config["x0_weight_cap"])

    def distillation_loss(encoder, z, ids, t, noise, full_ids):
        a = ac[t][:, None, None, None]
        x = a.sqrt() * z + (1 - a).sqrt() * noise
        with torch.no_grad():
            target = unet(x, t.float(), *teacher(torch.from_numpy(full_ids).to(device)))
        eps = unet(x, t.float(), *encoder(torch.from_numpy(ids).to(device)))
        return (x0_weight[t] * (eps - target).pow(2).mean(dim=(1, 2, 3))).mean()

    # A fixed validation problem (latents, texts, timesteps, noise) so its loss is comparable over time.
    g_val = torch.Generator().manual_seed(1234)
    val_idx = np.arange(min(config["n_eval"], len(val_set)))
    val_z = sample_latents(val_lat, val_idx, g_val, frozen.scaling_factor, device)
    val_ids = val_caps.ids[val_caps.start[val_idx]]
    val_t = torch.linspace(0, len(ac) - 1, len(val_idx)).long().to(device)
    val_noise = torch.randn(val_z.shape, generator=g_val).to(device)
    with torch.no_grad():  # the untuned encoder, its new words read as [UNK]: the baseline of the tune
        untuned = student_of(teacher, tok, 0).to(device).eval()
        start_loss = distillation_loss(untuned, val_z, val_ids, val_t, val_noise, val_full[val_idx])
    print(f"validation loss of the untuned encoder: {start_loss.item():.4f}")

    progress = Progress(log, wall)
    budget = Budget(args.minutes)
    while step < config["steps"]:
        budget.check(step, config)
        idx = np.sort(gen.integers(0, len(train_set), config["batch"]))
        z = sample_latents(train_lat, idx, g_noise, frozen.scaling_factor, device)
        ids = train_caps.pick(idx, gen, 0.0, 0.0, config["unk_insert"])
        ids[gen.random(ids.shape) < unk_chance[ids]] = tok.unk_id
        t = torch.randint(0, len(ac), (len(idx),), generator=g_noise).to(device)
        noise = torch.randn(z.shape, generator=g_noise).to(device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, config)
        loss = distillation_loss(student, z, ids, t, noise, train_full[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        ema.update(student, step)
        step += 1
        progress.step(step, config, loss=loss.item())
        if step % config["eval_every"] == 0 or step == config["steps"]:
            with torch.no_grad():
                val_loss = distillation_loss(ema.model, val_z, val_ids, val_t, val_noise, val_full[val_idx]).item()
            log.write(step=step, val_loss=val_loss)
            log.plot(["loss", "val_loss"], f"{NAME} (x₀ distance to the teacher)")
            progress.pause()
            save_checkpoint(path, dict(
                config=config, tokenizer=tok.state(), model=student.state_dict(), ema=ema.model.state_dict(),
                opt=opt.state_dict(), step=step, wall=progress.wall, device=device_name(device), rng=rng_state(gen),
                rng_noise=g_noise.get_state(), val_loss=val_loss, start_val_loss=start_loss.item(), seed=args.seed,
                text_layers=len(student.blocks), teacher_sha256=teacher_sha,
                data=dict(n=len(train_set), seed=train_set.index.get("seed"))))  # fmt: skip
            progress.resume()


def export_to(folder, ckpt):
    """Writes the checkpoint's EMA encoder and tokenizer into `folder` (float16 weights, like the rest) and
    brings its reference.json, text_encoder/config.json and manifest.json up to date."""
    tok = WordTokenizer(ckpt["tokenizer"]["vocab"], ckpt["tokenizer"]["max_length"])
    config = read_json(os.path.join(folder, "text_encoder", "config.json"))
    layers = ckpt["text_layers"]
    encoder = TextEncoder(len(tok.vocab), tok.pad_id, tok.max_length, config["hidden_size"], layers,
                          config["num_attention_heads"])  # fmt: skip
    encoder.load_state_dict(ckpt["ema"])
    for param in encoder.parameters():
        param.data = param.data.half().float()  # the reference outputs are those of the stored weights
    encoder.eval()
    reference = read_json(os.path.join(folder, "reference.json"))
    ids = torch.from_numpy(tok.encode([reference["caption"], ""]))
    reference["text_encoder"] = {
        "inputs": {"input_ids": {"dims": list(ids.shape), "data": ids.ravel().tolist()}},
        "outputs": export(TextEncoderGraph(encoder), (ids,), *TEXT_ENCODER_IO,
                          os.path.join(folder, "text_encoder", "model.onnx"), True),
    }  # fmt: skip
    with open(os.path.join(folder, "reference.json"), "w") as f:
        json.dump(reference, f)
    tok.save(os.path.join(folder, "tokenizer"))
    write_json(os.path.join(folder, "text_encoder", "config.json"),
               config | {"vocab_size": len(tok.vocab), "num_hidden_layers": layers})
    manifest = read_json(os.path.join(folder, "manifest.json"))
    manifest["parameters"]["text_encoder"] = sum(p.numel() for p in encoder.parameters())
    manifest["stages"]["text_encoder"] = {
        "trained": "text encoder only, distilled from the one it replaced (U-Net, VAE and learned null frozen)",
        "steps": ckpt["step"], "wall_s": round(ckpt["wall"], 1), "device": ckpt["device"],
        "batch": ckpt["config"]["batch"], "val_loss": round(ckpt["val_loss"], 5),
        "val_loss_untuned": round(ckpt["start_val_loss"], 5), "data": ckpt["data"],
        "teacher_sha256": ckpt["teacher_sha256"],
    }  # fmt: skip
    for rel, entry in manifest["files"].items():
        full = os.path.join(folder, rel)
        entry.update(sha256=file_sha256(full), bytes=os.path.getsize(full))
    write_json(os.path.join(folder, "manifest.json"), manifest)
    print(f"exported the text encoder of step {ckpt['step']} (vocabulary {len(tok.vocab)}) → {folder}")


def main():
    p = parser(__doc__.split("\n")[0], CONFIGS)
    p.add_argument("--model", default="models/ldm", help="the exported LDM folder whose text encoder is tuned")
    p.add_argument("--export", action="store_true", help="write the last checkpoint into --model, do not train")
    args = p.parse_args()
    config = copy.deepcopy(CONFIGS[args.config])
    device = setup(args, config)
    if args.export:
        export_to(args.model, load_checkpoint(f"{args.out}/checkpoints/{NAME}.pt"))
    else:
        train(args, config, device)


if __name__ == "__main__":
    main()
