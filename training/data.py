"""The shapes world as exported by `atelier world export` (format atelier-shapes-v1): memory-mapped images,
captions and plans; the word-level caption tokenizer; the cache of VAE latents the diffusion stage trains on."""

import hashlib
import json
import os
import re

import numpy as np
import torch


class Shards:
    def __init__(self, root):
        self.root = root
        with open(os.path.join(root, "index.json")) as f:
            self.index = json.load(f)
        if self.index.get("format") != "atelier-shapes-v1":
            raise ValueError(f"{root}/index.json: format must be atelier-shapes-v1, got {self.index.get('format')}")
        im = self.index["image"]
        self.shape = (im["height"], im["width"], im["channels"])
        shards = self.index["shards"]
        self.images = [
            np.memmap(os.path.join(root, s["images"]), np.uint8, "r", shape=(s["n"], *self.shape)) for s in shards
        ]
        self.offsets = np.cumsum([0] + [s["n"] for s in shards])
        self._records = None

    def __len__(self):
        return int(self.offsets[-1])

    def images_at(self, idx):
        """uint8 [B,H,W,C] for the global indexes `idx`, gathered across shards."""
        idx = np.asarray(idx)
        shard = np.searchsorted(self.offsets, idx, side="right") - 1
        out = np.empty((len(idx), *self.shape), np.uint8)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self.images[s][idx[sel] - self.offsets[s]]
        return out

    @property
    def records(self):
        if self._records is None:
            self._records = []
            for s in self.index["shards"]:
                with open(os.path.join(self.root, s["records"])) as f:
                    self._records.extend(json.loads(line) for line in f if line.strip())
            if len(self._records) != len(self):
                raise ValueError(f"{self.root}: {len(self._records)} records for {len(self)} images")
        return self._records

    def captions(self):
        return [r["captions"] for r in self.records]

    def texts(self):
        """Every text that describes each image: its captions and, when the record has one, its chat request
        (the request's synonyms — "tiny", "higher than" — are the words users and eval prompts use)."""
        return [r["captions"] + ([r["request"]] if r.get("request") else []) for r in self.records]

    def plans(self):
        return [r["plan"] for r in self.records]


def to_tensor(images, device):
    """uint8 HWC → float NCHW in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1)


class WordTokenizer:
    """Lowercase, split like HF's `Whitespace` pre-tokenizer, look words up in a fixed vocabulary, pad right."""

    PAD, UNK = "[PAD]", "[UNK]"
    SPLIT = re.compile(r"\w+|[^\w\s]+")

    def __init__(self, vocab, max_length):
        self.vocab = vocab
        self.max_length = max_length
        self.pad_id, self.unk_id = vocab[self.PAD], vocab[self.UNK]

    @classmethod
    def build(cls, texts, max_length):
        words = sorted({w for t in texts for w in cls.SPLIT.findall(t.lower())})
        return cls({w: i for i, w in enumerate([cls.PAD, cls.UNK, *words])}, max_length)

    def words(self, text):
        return self.SPLIT.findall(text.lower())

    def encode(self, texts):
        """int64 [B, max_length]; longer texts are truncated, the empty text is all padding."""
        ids = np.full((len(texts), self.max_length), self.pad_id, np.int64)
        for i, t in enumerate(texts):
            tok = [self.vocab.get(w, self.unk_id) for w in self.words(t)][: self.max_length]
            ids[i, : len(tok)] = tok
        return ids

    def save(self, folder):
        """tokenizer.json + tokenizer_config.json, loadable by HF tokenizers and transformers.js."""
        os.makedirs(folder, exist_ok=True)
        special = [
            {"id": self.vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for t in (self.PAD, self.UNK)
        ]  # fmt: skip
        tokenizer = {
            "version": "1.0",
            "truncation": {"direction": "Right", "max_length": self.max_length, "strategy": "LongestFirst", "stride": 0},
            "padding": {"strategy": {"Fixed": self.max_length}, "direction": "Right", "pad_to_multiple_of": None,
                        "pad_id": self.pad_id, "pad_type_id": 0, "pad_token": self.PAD},
            "added_tokens": special,
            "normalizer": {"type": "Lowercase"},
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": None,
            "decoder": None,
            "model": {"type": "WordLevel", "vocab": self.vocab, "unk_token": self.UNK},
        }  # fmt: skip
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": self.max_length,
            "padding_side": "right",
            "truncation_side": "right",
            "pad_token": self.PAD,
            "unk_token": self.UNK,
            "do_lower_case": True,
            "clean_up_tokenization_spaces": False,
        }
        with open(os.path.join(folder, "tokenizer.json"), "w") as f:
            json.dump(tokenizer, f, indent=1)
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump(config, f, indent=2)
        with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
            json.dump({"pad_token": self.PAD, "unk_token": self.UNK}, f, indent=2)

    def state(self):
        return {"vocab": self.vocab, "max_length": self.max_length}


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def latent_cache_path(shards, vae_checkpoint, out):
    """Where latent_cache keeps the posteriors of `shards` under the encoder of `vae_checkpoint`."""
    key = f"{os.path.abspath(shards.root)}|{len(shards)}|{shards.index.get('seed')}|{file_sha256(vae_checkpoint)}"
    split = shards.index.get("split", "data")
    return os.path.join(out, "cache", f"latents-{split}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npy")


def sample_latents(cache, idx, generator, scale, device):
    """Scaled latents of the images `idx`, drawn from their cached posteriors (latent_cache) with `generator`."""
    mean, logvar = torch.from_numpy(np.asarray(cache[idx])).to(device).chunk(2, dim=1)
    return (mean + torch.randn(mean.shape, generator=generator).to(device) * (0.5 * logvar).exp()) * scale


@torch.no_grad()
def latent_cache(shards, encoder, vae_checkpoint, out, device, batch=256):
    """The VAE posterior (mean‖logvar, float32 [N,8,h,w]) of every image, computed once per dataset and VAE
    checkpoint and kept in out/cache/; training samples from it, so each epoch sees fresh posterior noise."""
    path = latent_cache_path(shards, vae_checkpoint, out)
    if os.path.exists(path):
        return np.load(path, mmap_mode="r")
    encoder.eval()
    parts = []
    for i in range(0, len(shards), batch):
        x = to_tensor(shards.images_at(np.arange(i, min(i + batch, len(shards)))), device)
        parts.append(encoder(x).float().cpu().numpy())
    latents = np.concatenate(parts)
    np.save(path + ".tmp.npy", latents)
    os.replace(path + ".tmp.npy", path)
    print(f"cached {latents.shape} latents in {path}", flush=True)
    return latents
