"""The frozen models the projection layers train against, read back from the very ONNX files they will run
with at inference (the files whose sha256 projection.json records), not from training checkpoints that may
have moved on since the export.

torch.onnx renames many weights (a Linear inside a MatMul becomes a transposed `onnx::MatMul_123`, a
GroupNorm's affine becomes `[C,1,1]` constants), so the mapping is recovered by exporting a probe: the same
module class, every parameter filled with distinct random values, exported the same way; each weight slot
(node name, input index) of the probe is matched to its parameter by value, and the target file's tensor in
the same slot is loaded into that parameter. float16 weights stored behind a Cast (training/export.py
--fp16) are read through the Cast. The diffusion components are then checked against the PyTorch outputs
that training/export.py stored in reference.json.
"""

import json
import os
import tempfile
import warnings

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper

from data import WordTokenizer
from export import (OPSET, TEXT_ENCODER_IO, UNET_IO, VAE_DECODER_IO, VAE_ENCODER_IO, TextEncoderGraph,
                    UNetGraph, VaeDecoderGraph, VaeEncoderGraph, fill, reference_error)  # fmt: skip
from ldm import TextEncoder, UNet, alphas_cumprod
from planner import Llama, export_onnx
from vae import Encoder


def _weights(model):
    """Initializer arrays by the name the graph's nodes use: a float16 initializer is read through its Cast,
    and torch.onnx replaces initializers equal to another (e.g. zero-initialised biases) by an Identity."""
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    plumbing = [n for n in model.graph.node if n.op_type in ("Cast", "Identity")]
    for _ in range(3):
        for node in plumbing:
            if node.input[0] in arrays:
                arrays[node.output[0]] = arrays[node.input[0]].astype(np.float32)
    slots = {(node.name, i): x for node in model.graph.node if node.op_type not in ("Cast", "Identity")
             for i, x in enumerate(node.input) if x in arrays}  # fmt: skip
    return arrays, slots


def _key(array):
    return np.ascontiguousarray(array, dtype=np.float32).tobytes()


def load_onnx_weights(module, export, path):
    """Fills `module`'s parameters from the graph at `path`, which `export(module, file)` must reproduce."""
    params = dict(module.named_parameters())
    gen = torch.Generator().manual_seed(0)
    by_value = {}
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(torch.randn(p.shape, generator=gen))
            a = p.numpy()
            by_value[_key(a)] = (name, False)
            if a.ndim == 2:
                by_value[_key(a.T)] = (name, True)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export(module, os.path.join(tmp, "probe.onnx"))
        probe_arrays, probe_slots = _weights(onnx.load(os.path.join(tmp, "probe.onnx")))
    arrays, slots = _weights(onnx.load(path))
    found = {}
    for slot, init in probe_slots.items():
        hit = by_value.get(_key(probe_arrays[init]))
        if hit is None:
            continue  # a constant of the graph, not a parameter
        name, transposed = hit
        if slot not in slots:
            raise ValueError(f"{path}: no weight at {slot[0]} input {slot[1]} ({name}); was it exported by "
                             "another exporter or torch version?")  # fmt: skip
        value = arrays[slots[slot]]
        if value.shape != probe_arrays[init].shape:
            raise ValueError(f"{path}: {name} has shape {value.shape} at {slot[0]}, "
                             f"expected {probe_arrays[init].shape}")  # fmt: skip
        value = np.ascontiguousarray(value.T if transposed else value, dtype=np.float32).reshape(params[name].shape)
        if name in found and not np.array_equal(found[name], value):
            raise ValueError(f"{path}: {name} appears twice with different values")
        found[name] = value
    missing = sorted(set(params) - set(found))
    if missing:
        raise ValueError(f"{path}: no weights found for {', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}")
    with torch.no_grad():
        for name, value in found.items():
            params[name].copy_(torch.tensor(value))
    return module.eval().requires_grad_(False)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def load_planner(folder):
    """The planner LLM of a transformers.js folder (exported by training/planner.py) → (Llama, vocab)."""
    c = read_json(os.path.join(folder, "config.json"))
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "head_dim", "intermediate_size", "rope_theta")  # fmt: skip
    model = Llama({k: c[k] for k in keys})
    vocab = read_json(os.path.join(folder, "tokenizer.json"))["model"]["vocab"]
    path = os.path.join(folder, "onnx", "model.onnx")
    load_onnx_weights(model, lambda m, p: export_onnx(m, p, with_hidden=True), path)
    return model, vocab


def _export(module, inputs, names, outputs, axes, path):
    torch.onnx.export(module, inputs, path, input_names=names, output_names=outputs, dynamic_axes=axes,
                      opset_version=OPSET, do_constant_folding=True)  # fmt: skip


def load_vae_folder(folder, vae):
    """Fills `vae` (a training/vae.py VAE of the exported architecture) from a model folder's vae_encoder and
    vae_decoder graphs → a checkpoint-like dict whose step, wall time and lineage are the manifest's, so that
    `vae.py --decoder-only FOLDER` continues the released decoder on a machine without its checkpoints."""
    image, latent = torch.zeros(2, 3, 64, 64), torch.zeros(2, vae.decoder.net[0].in_channels, 8, 8)
    load_onnx_weights(vae.encoder, lambda m, p: _export(VaeEncoderGraph(vae), (image,), *VAE_ENCODER_IO, p),
                      os.path.join(folder, "vae_encoder", "model.onnx"))  # fmt: skip
    load_onnx_weights(vae.decoder, lambda m, p: _export(VaeDecoderGraph(vae), (latent,), *VAE_DECODER_IO, p),
                      os.path.join(folder, "vae_decoder", "model.onnx"))  # fmt: skip
    stage = read_json(os.path.join(folder, "manifest.json"))["stages"]["vae"]
    ckpt = dict(model=vae.state_dict(), step=stage["steps"], wall=stage["wall_s"], device=stage["device"],
                val_psnr=stage["val_psnr_db"], scaling_factor=stage["scaling_factor"],
                name=f"{os.path.normpath(folder)} (ONNX export)")  # fmt: skip
    if "decoder_fine_tuned_from" in stage:
        ckpt["source"] = stage["decoder_fine_tuned_from"]
    return ckpt


class Denoiser:
    """A diffusers-layout folder written by training/export.py, as PyTorch modules: the U-Net (ε), the native
    text encoder and its tokenizer (targets of the auxiliary alignment and the init of the null conditioning),
    the VAE encoder (latents), the latent scaling factor and the training noise schedule."""

    def __init__(self, folder, device="cpu"):
        self.folder = folder
        u = read_json(os.path.join(folder, "unet", "config.json"))
        t = read_json(os.path.join(folder, "text_encoder", "config.json"))
        v = read_json(os.path.join(folder, "vae_encoder", "config.json"))
        s = read_json(os.path.join(folder, "scheduler", "scheduler_config.json"))
        tok = read_json(os.path.join(folder, "tokenizer", "tokenizer.json"))
        self.tokenizer = WordTokenizer(tok["model"]["vocab"], t["max_position_embeddings"])
        self.d_cond = u["cross_attention_dim"]
        self.scaling_factor = v["scaling_factor"]
        self.alphas_cumprod = alphas_cumprod(s).to(device)
        length, d = self.tokenizer.max_length, self.d_cond
        reference = read_json(os.path.join(folder, "reference.json"))

        self.unet = UNet(channels=u["block_out_channels"], blocks=u["layers_per_block"], heads=u["num_attention_heads"],
                         d_emb=u["time_embedding_dim"], d_cond=d)  # fmt: skip
        unet_in = (torch.zeros(2, 4, 8, 8), torch.tensor([500.0, 21.0]), torch.zeros(2, length, d), torch.zeros(2, d))
        load_onnx_weights(self.unet, lambda m, p: _export(UNetGraph(m), unet_in, *UNET_IO, p),
                          os.path.join(folder, "unet", "model.onnx"))

        self.text = TextEncoder(t["vocab_size"], t["pad_token_id"], length, d, t["num_hidden_layers"],
                                t["num_attention_heads"])  # fmt: skip
        ids = torch.from_numpy(self.tokenizer.encode(["a", ""]))
        load_onnx_weights(self.text, lambda m, p: _export(TextEncoderGraph(m), (ids,), *TEXT_ENCODER_IO, p),
                          os.path.join(folder, "text_encoder", "model.onnx"))

        self.vae_encoder = Encoder(v["block_out_channels"], v["latent_channels"])
        holder = nn.Module()
        load_onnx_weights(self.vae_encoder, lambda m, p: (setattr(holder, "encoder", m), _export(
            VaeEncoderGraph(holder), (torch.zeros(2, 3, 64, 64),), *VAE_ENCODER_IO, p)),
            os.path.join(folder, "vae_encoder", "model.onnx"))  # fmt: skip
        self._check(reference)
        for m in (self.unet, self.text, self.vae_encoder):
            m.to(device)

    def _check(self, reference):
        """Outputs equal to the PyTorch outputs export.py stored: the weights were read back correctly."""

        def tensor(spec):
            if "data" in spec:
                return torch.tensor(spec["data"]).reshape(spec["dims"])
            return torch.from_numpy(fill(tuple(spec["dims"]), spec["amp"], spec["phase"]))

        with torch.no_grad():
            ref = reference["unet"]["inputs"]
            eps = self.unet(tensor(ref["sample"]), tensor(ref["timestep"]).float(),
                            tensor(ref["encoder_hidden_states"]), tensor(ref["text_embeds"]))  # fmt: skip
            got = {"out_sample": eps}
            ids = tensor(reference["text_encoder"]["inputs"]["input_ids"]).long()
            got.update(zip(["last_hidden_state", "pooler_output"], self.text(ids)))
            got["latent_parameters"] = self.vae_encoder(tensor(reference["vae_encoder"]["inputs"]["sample"]))
        for component in ("unet", "text_encoder", "vae_encoder"):
            for name, summary in reference[component]["outputs"].items():
                err = reference_error(got[name], summary)
                if err is not None:
                    raise ValueError(f"{self.folder}/{component}: {name} differs from reference.json by {err:.3g}; "
                                     "the weights were not read back correctly")  # fmt: skip

    @torch.no_grad()
    def encode_text(self, texts, batch=512):
        """(pooled [N,d], mean of the caption's token states [N,d]) of the native text encoder."""
        device = next(self.text.parameters()).device
        pooled, means = [], []
        for i in range(0, len(texts), batch):
            ids = torch.from_numpy(self.tokenizer.encode(texts[i : i + batch])).to(device)
            states, p = self.text(ids)
            keep = (ids != self.tokenizer.pad_id).float()[..., None]
            pooled.append(p)
            means.append((states * keep).sum(1) / keep.sum(1).clamp_min(1))
        return torch.cat(pooled).cpu(), torch.cat(means).cpu()

    @torch.no_grad()
    def null(self):
        """The native null conditioning (the empty prompt): tokens [L,d], pooled [d]."""
        device = next(self.text.parameters()).device
        states, pooled = self.text(torch.from_numpy(self.tokenizer.encode([""])).to(device))
        return states[0].cpu(), pooled[0].cpu()
