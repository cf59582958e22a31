"""Exports the trained VAE, text encoder and denoiser in the diffusers ONNX layout (DESIGN.md, "Model folders").

    DEST/model_index.json, scheduler/scheduler_config.json, tokenizer/, text_encoder/, unet/, vae_encoder/,
    vae_decoder/ (each with model.onnx and config.json), reference.json, manifest.json

Every graph is checked with onnx.checker. reference.json holds deterministic inputs and the PyTorch outputs
for them (first values, mean, mean |x|): tests/training-export.test.ts runs the graphs in onnxruntime-node and
compares (Python has no ONNX runtime here). manifest.json lists the sha256 of every file, parameter counts,
data seed, steps and wall time per stage, and an `eval` object for figures measured later.

    /usr/bin/python3 training/export.py --config default --dest models/ldm [--fp16]
    /usr/bin/python3 training/export.py --vae-decoder training/checkpoints/vae-v3h-decoder.pt --dest models/ldm

`--vae-decoder CKPT` writes only the decoder of a `vae.py --decoder-only` checkpoint into an exported folder
(float16 weights, like the rest) after checking that CKPT's frozen encoder is the folder's; the manifest's
`eval` figures all went through the old decoder, so they are dropped to be measured again.
"""

import os

# Idle OpenMP threads must sleep, not spin: on 2 cores shared with other jobs, spinning made a step 40× slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import datetime
import json

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

from data import file_sha256
from ldm import load_ldm
from vae import load_vae

OPSET = 17
# The sampler a folder recommends is its scheduler_config.json's class (diffusers reads it so, and so does
# pipelines/model-folder.ts); every key of the training noise schedule is written, so a sampler chosen instead at
# run time reads the same schedule. Euler ancestral with "trailing" timesteps is the default since session 14
# (BENCHMARKS.md): trailing spacing starts sampling at the last training timestep, whose noisy samples are nearly
# pure noise like the initial one, instead of 48 steps short of it ("leading" with steps_offset 1 at 20 steps;
# Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed", section 3.3).
SCHEDULER_CLASSES = {"ddim": "DDIMScheduler", "euler_ancestral": "EulerAncestralDiscreteScheduler"}
# Input names, output names and dynamic axes of the text encoder's and the U-Net's graphs (diffusers' I/O names):
# the same for an export and for the probe that reads an export's weights back (frozen.py).
TEXT_ENCODER_IO = (["input_ids"], ["last_hidden_state", "pooler_output"],
                   {"input_ids": {0: "batch", 1: "sequence"}, "last_hidden_state": {0: "batch", 1: "sequence"},
                    "pooler_output": {0: "batch"}})  # fmt: skip
UNET_IO = (["sample", "timestep", "encoder_hidden_states", "text_embeds"], ["out_sample"],
           {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
            "encoder_hidden_states": {0: "batch", 1: "sequence"}, "text_embeds": {0: "batch"},
            "out_sample": {0: "batch", 2: "height", 3: "width"}})  # fmt: skip
VAE_ENCODER_IO = (["sample"], ["latent_parameters"],
                  {"sample": {0: "batch", 2: "height", 3: "width"},
                   "latent_parameters": {0: "batch", 2: "latent_height", 3: "latent_width"}})  # fmt: skip
VAE_DECODER_IO = (["latent_sample"], ["sample"],
                  {"latent_sample": {0: "batch", 2: "latent_height", 3: "latent_width"},
                   "sample": {0: "batch", 2: "height", 3: "width"}})  # fmt: skip


class TextEncoderGraph(nn.Module):
    def __init__(self, text):
        super().__init__()
        self.text = text

    def forward(self, input_ids):
        return self.text(input_ids)


class UNetGraph(nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states, text_embeds):
        return self.unet(sample, timestep, encoder_hidden_states, text_embeds)


class VaeEncoderGraph(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.encoder = vae.encoder

    def forward(self, sample):
        return self.encoder(sample)


class VaeDecoderGraph(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.decoder = vae.decoder

    def forward(self, latent_sample):
        return self.decoder(latent_sample)


def fill(shape, amp, phase):
    """Deterministic test input the TypeScript side rebuilds: x[i] = fround(amp · sin(0.37 i + phase))."""
    i = np.arange(int(np.prod(shape)), dtype=np.float64)
    return (amp * np.sin(0.37 * i + phase)).astype(np.float32).reshape(shape)


def summary(t):
    a = t.detach().double().numpy().ravel()
    return {"dims": list(t.shape), "head": [float(v) for v in a[:16]], "mean": float(a.mean()),
            "meanAbs": float(np.abs(a).mean())}  # fmt: skip


def reference_error(tensor, summary):
    """How far `tensor`'s first values are from a reference.json summary's, or None within tolerance (1e-3
    relative: the float16 weights and another runtime round differently)."""
    head = tensor.detach().flatten()[: len(summary["head"])].double().numpy()
    err = np.abs(head - np.array(summary["head"])).max()
    return err if err > 1e-3 * (1 + np.abs(summary["head"]).max()) else None


def fp16_weights(path):
    """Stores float initializers as float16 behind a Cast, so the file halves while compute stays float32
    (ONNX Runtime folds the casts when the session is created)."""
    model = onnx.load(path)
    casts = []
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT and np.prod(init.dims) > 1:
            name = init.name
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), name + ".fp16"))
            casts.append(helper.make_node("Cast", [name + ".fp16"], [name], to=TensorProto.FLOAT))
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, path)


def export(module, inputs, names, outputs, axes, path, fp16):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.onnx.export(module, inputs, path, input_names=names, output_names=outputs, dynamic_axes=axes,
                      opset_version=OPSET, do_constant_folding=True)  # fmt: skip
    if fp16:
        fp16_weights(path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    with torch.no_grad():
        out = module(*inputs)
    out = out if isinstance(out, tuple) else (out,)
    return {name: summary(o) for name, o in zip(outputs, out)}


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def export_vae_decoder(dest, path):
    vae, ckpt = load_vae(path)
    if "source" not in ckpt:
        raise SystemExit(f"{path}: not a `vae.py --decoder-only` checkpoint (a new encoder needs a full export)")
    for param in vae.parameters():
        param.data = param.data.half().float()  # the reference outputs are those of the stored weights
    with open(f"{dest}/reference.json") as f:
        reference = json.load(f)
    # The latent space is the folder's only if CKPT's encoder reproduces the folder's encoder outputs.
    spec = reference["vae_encoder"]["inputs"]["sample"]
    latent_parameters = VaeEncoderGraph(vae)(torch.from_numpy(fill(tuple(spec["dims"]), spec["amp"], spec["phase"])))
    if reference_error(latent_parameters, reference["vae_encoder"]["outputs"]["latent_parameters"]) is not None:
        raise SystemExit(f"{path}: its encoder is not {dest}'s (a new latent space needs a full export)")
    spec = reference["vae_decoder"]["inputs"]["latent_sample"]
    latent = torch.from_numpy(fill(tuple(spec["dims"]), spec["amp"], spec["phase"]))
    reference["vae_decoder"]["outputs"] = export(VaeDecoderGraph(vae), (latent,), *VAE_DECODER_IO,
                                                 f"{dest}/vae_decoder/model.onnx", True)  # fmt: skip
    with open(f"{dest}/reference.json", "w") as f:
        json.dump(reference, f)
    with open(f"{dest}/manifest.json") as f:
        manifest = json.load(f)
    manifest["parameters"]["vae_decoder"] = sum(p.numel() for p in vae.decoder.parameters())
    manifest["stages"]["vae"] = {"steps": ckpt["step"], "wall_s": round(ckpt["wall"], 1), "device": ckpt["device"],
                                 "val_psnr_db": round(ckpt["val_psnr"], 3), "scaling_factor": ckpt["scaling_factor"],
                                 "decoder_fine_tuned_from": ckpt["source"]}  # fmt: skip
    stale, manifest["eval"] = sorted(manifest["eval"]), {}
    for rel, entry in manifest["files"].items():
        entry.update(sha256=file_sha256(f"{dest}/{rel}"), bytes=os.path.getsize(f"{dest}/{rel}"))
    write_json(f"{dest}/manifest.json", manifest)
    print(f"exported the VAE decoder of {path} (step {ckpt['step']}) → {dest}; measure again: {', '.join(stale)}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="default")
    p.add_argument("--out", default="training", help="the training stages' folder (checkpoints/)")
    p.add_argument("--vae", help="default: OUT/checkpoints/vae-CONFIG.pt")
    p.add_argument("--ldm", help="default: OUT/checkpoints/ldm-CONFIG.pt")
    p.add_argument("--dest", default="models/ldm")
    p.add_argument("--fp16", action="store_true", help="store weights as float16 (compute stays float32)")
    p.add_argument("--guidance", type=float, help="recommended guidance scale (default: the training config's)")
    p.add_argument("--scheduler", choices=sorted(SCHEDULER_CLASSES), default="euler_ancestral",
                   help="the recommended sampler, written as the scheduler config's class")
    p.add_argument("--eval", help="JSON file of measured figures to record under the manifest's `eval`")
    p.add_argument("--vae-decoder", metavar="CKPT", help="write only this decoder fine-tune into the folder --dest")
    args = p.parse_args()
    torch.set_num_threads(2)
    if args.vae_decoder:
        return export_vae_decoder(args.dest, args.vae_decoder)
    vae, vae_ckpt = load_vae(args.vae or f"{args.out}/checkpoints/vae-{args.config}.pt")
    ldm, tok, ldm_ckpt = load_ldm(args.ldm or f"{args.out}/checkpoints/ldm-{args.config}.pt")
    if args.fp16:
        # Round the PyTorch weights too, so the reference outputs are those of the stored weights.
        for param in list(vae.parameters()) + list(ldm.parameters()):
            param.data = param.data.half().float()
    cfg, scale = ldm_ckpt["config"], vae_ckpt["scaling_factor"]
    d, L, dest = cfg["d_cond"], tok.max_length, args.dest
    if os.path.isdir(dest):
        for root, _, files in os.walk(dest):
            for f in files:
                os.remove(os.path.join(root, f))
    os.makedirs(dest, exist_ok=True)

    caption = "a red circle to the left of a blue square on a white background"
    ids = torch.from_numpy(tok.encode([caption, ""]))
    reference = {"formula": "float inputs: x[i] = fround(amp * sin(0.37 * i + phase))", "caption": caption}
    reference["text_encoder"] = {
        "inputs": {"input_ids": {"dims": list(ids.shape), "data": ids.ravel().tolist()}},
        "outputs": export(TextEncoderGraph(ldm.text), (ids,), *TEXT_ENCODER_IO, f"{dest}/text_encoder/model.onnx",
                          args.fp16),
    }  # fmt: skip
    unet_in = dict(sample=((2, 4, 8, 8), 1.0, 0.0), encoder_hidden_states=((2, L, d), 1.0, 0.5),
                   text_embeds=((2, d), 1.0, 1.0))  # fmt: skip
    timestep = torch.tensor([500.0, 21.0])
    tensors = {k: torch.from_numpy(fill(*v)) for k, v in unet_in.items()}
    reference["unet"] = {
        "inputs": {**{k: {"dims": list(v[0]), "amp": v[1], "phase": v[2]} for k, v in unet_in.items()},
                   "timestep": {"dims": [2], "data": timestep.tolist()}},
        "outputs": export(UNetGraph(ldm.unet), (tensors["sample"], timestep, tensors["encoder_hidden_states"],
                          tensors["text_embeds"]), *UNET_IO, f"{dest}/unet/model.onnx", args.fp16),
    }  # fmt: skip
    image = torch.from_numpy(fill((2, 3, 64, 64), 0.9, 0.0))
    reference["vae_encoder"] = {
        "inputs": {"sample": {"dims": [2, 3, 64, 64], "amp": 0.9, "phase": 0.0}},
        "outputs": export(VaeEncoderGraph(vae), (image,), *VAE_ENCODER_IO, f"{dest}/vae_encoder/model.onnx", args.fp16),
    }  # fmt: skip
    latent = torch.from_numpy(fill((2, 4, 8, 8), 1.0 / scale, 0.3))
    reference["vae_decoder"] = {
        "inputs": {"latent_sample": {"dims": [2, 4, 8, 8], "amp": 1.0 / scale, "phase": 0.3}},
        "outputs": export(VaeDecoderGraph(vae), (latent,), *VAE_DECODER_IO, f"{dest}/vae_decoder/model.onnx", args.fp16),
    }  # fmt: skip
    with open(f"{dest}/reference.json", "w") as f:
        json.dump(reference, f)

    tok.save(f"{dest}/tokenizer")
    write_json(f"{dest}/scheduler/scheduler_config.json", {
        "_class_name": SCHEDULER_CLASSES[args.scheduler], "_diffusers_version": "0.30.0",
        "num_train_timesteps": cfg["num_train_timesteps"], "beta_start": cfg["beta_start"], "beta_end": cfg["beta_end"],
        "beta_schedule": "scaled_linear", "trained_betas": None, "prediction_type": "epsilon", "clip_sample": False,
        "clip_sample_range": 1.0, "set_alpha_to_one": False, "steps_offset": 1, "timestep_spacing": "trailing",
        "thresholding": False, "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0,
        "rescale_betas_zero_snr": False,
    })  # fmt: skip
    write_json(f"{dest}/text_encoder/config.json", {
        "_class_name": "AtelierTextEncoder", "model_type": "atelier_text_encoder", "vocab_size": len(tok.vocab),
        "hidden_size": d, "projection_dim": d, "num_hidden_layers": cfg["text_layers"],
        "num_attention_heads": cfg["text_heads"], "max_position_embeddings": L, "pad_token_id": tok.pad_id,
        "null_embedding": "learned; an all-padding input_ids row (the empty prompt) returns it",
    })  # fmt: skip
    write_json(f"{dest}/unet/config.json", {
        "_class_name": "UNet2DConditionModel", "sample_size": 8, "in_channels": 4, "out_channels": 4,
        "block_out_channels": list(cfg["channels"]), "layers_per_block": cfg["blocks"],
        "cross_attention_dim": d, "attention_head_dim": cfg["channels"][0] // cfg["heads"],
        "num_attention_heads": cfg["heads"], "time_embedding_dim": cfg["d_emb"],
        "addition_embed_type": "text_embeds", "projection_class_embeddings_input_dim": d,
        "flip_sin_to_cos": True, "freq_shift": 0,
    })  # fmt: skip
    vae_cfg = {
        "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "sample_size": 64, "block_out_channels": list(vae_ckpt["config"]["channels"]), "scaling_factor": scale,
        "downsampling_factor": 8,
    }  # fmt: skip
    write_json(f"{dest}/vae_encoder/config.json", vae_cfg)
    write_json(f"{dest}/vae_decoder/config.json", vae_cfg)
    write_json(f"{dest}/model_index.json", {
        "_class_name": "OnnxStableDiffusionPipeline", "_diffusers_version": "0.30.0",
        "scheduler": ["diffusers", SCHEDULER_CLASSES[args.scheduler]], "text_encoder": ["diffusers", "OnnxRuntimeModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"], "unet": ["diffusers", "OnnxRuntimeModel"],
        "vae_encoder": ["diffusers", "OnnxRuntimeModel"], "vae_decoder": ["diffusers", "OnnxRuntimeModel"],
        "safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False,
    })  # fmt: skip

    files = {}
    for root, _, names in sorted(os.walk(dest)):
        for n in sorted(names):
            rel = os.path.relpath(os.path.join(root, n), dest)
            files[rel] = {"sha256": file_sha256(os.path.join(root, n)), "bytes": os.path.getsize(os.path.join(root, n))}
    vae_params = {k: sum(p.numel() for p in getattr(vae, k).parameters()) for k in ("encoder", "decoder")}
    write_json(f"{dest}/manifest.json", {
        "name": "atelier-shapes-ldm", "layout": "diffusers-onnx", "config": args.config,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "weights": "float16 (computed in float32)" if args.fp16 else "float32",
        "data": ldm_ckpt["data"], "seed": ldm_ckpt["seed"],
        "parameters": {"text_encoder": ldm_ckpt["params"]["text_encoder"], "unet": ldm_ckpt["params"]["unet"],
                       "vae_encoder": vae_params["encoder"], "vae_decoder": vae_params["decoder"]},
        "stages": {
            "vae": {"steps": vae_ckpt["step"], "wall_s": round(vae_ckpt["wall"], 1),
                    "device": vae_ckpt.get("device", "cpu"), "val_psnr_db": round(vae_ckpt["val_psnr"], 3),
                    "scaling_factor": scale}
                   | ({"decoder_fine_tuned_from": vae_ckpt["source"]} if "source" in vae_ckpt else {}),
            "ldm": {"steps": ldm_ckpt["step"], "wall_s": round(ldm_ckpt["wall"], 1),
                    "device": ldm_ckpt.get("device", "cpu"), "val_loss": round(ldm_ckpt["val_loss"], 5),
                    "batch": cfg["batch"], "cond_drop": cfg["cond_drop"]}
                   | ({"continued_from": ldm_ckpt["source"]} if "source" in ldm_ckpt else {}),
        },
        "recommended": {"scheduler": args.scheduler, "steps": 20, "guidance_scale": args.guidance or cfg["guidance"]},
        "eval": json.load(open(args.eval)) if args.eval else {},
        "files": files,
    })  # fmt: skip
    total = sum(f["bytes"] for f in files.values())
    print(f"exported {len(files)} files, {total / 1e6:.2f} MB → {dest}")


if __name__ == "__main__":
    main()
