"""The embedded planner LLM: a tiny Llama (RMSNorm, RoPE, SwiGLU, grouped-query attention) trained from
scratch on the shapes world's chat corpus, exported in the transformers.js layout with KV-cache I/O and
one extra graph output `hidden_states.{i}` per layer (primer: only the plan span's hidden states condition
the image, so the runtime must be able to read them).

    /usr/bin/python3 training/planner.py train  --corpus data/chat/train.jsonl --out training/checkpoints/planner
    /usr/bin/python3 training/planner.py export --ckpt training/checkpoints/planner --out models/planner

Corpus lines: {"messages": [{"role": "user"|"assistant"|"critique", "content": "..."}, ...]}; the loss is
taken on assistant turns only (they are plans).
"""
import argparse
import json
import math
import os
import re
import time

# Idle OpenMP threads must sleep, not spin: with other jobs on the same cores, spinning made steps ~10× slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn as nn
import torch.nn.functional as F

from util import Log, save_checkpoint

SPECIAL = ["[PAD]", "[UNK]", "<|user|>", "<|assistant|>", "<|critique|>", "<|end|>"]
PLAN_TOKENS = ["<IMG_BEGIN>", "<STYLE>", "<LAYOUT>", "<OBJECT>", "<COLOR>", "<MATERIAL>", "<LIGHTING>",
               "<CAMERA>", "<IMG_END>"]
CHAT_TEMPLATE = ("{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} "
                 "{% if message['role'] == 'assistant' %}<|end|> {% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CONFIGS = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                 intermediate_size=64, steps=20, batch=8, lr=3e-3),
    # models/planner v1. A 4-layer, 320-wide variant with stronger [UNK] augmentation (--word-dropout 0.1
    # --unk-insertion 0.08, 3000 steps) scored lower on held-out phrasing (requests 0.596 vs 0.645).
    "default": dict(hidden_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=256, steps=3000, batch=32, lr=2e-3),
}
MAX_LEN = 320


# ---------------------------------------------------------------- tokenizer (HF tokenizer.json, WordLevel)
WORD = re.compile(r"\w+|[^\w\s]+")  # the `Whitespace` pre-tokenizer's pattern
SPECIAL_SPLIT = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL + PLAN_TOKENS) + ")")


def words(text):
    """Tokenize exactly as tokenizer.json does: added tokens first, then lowercase + Whitespace split."""
    out = []
    for piece in SPECIAL_SPLIT.split(text):
        if piece in SPECIAL or piece in PLAN_TOKENS:
            out.append(piece)
        elif piece:
            out.extend(WORD.findall(piece.lower()))
    return out


def build_vocab(conversations):
    seen = {}
    for conv in conversations:
        for message in conv["messages"]:
            for w in words(message["content"]):
                seen[w] = seen.get(w, 0) + 1
    vocab = SPECIAL + PLAN_TOKENS
    vocab += sorted(w for w in seen if w not in vocab)
    return {w: i for i, w in enumerate(vocab)}


def tokenizer_json(vocab):
    added = [dict(id=vocab[t], content=t, single_word=False, lstrip=False, rstrip=False, normalized=False,
                  special=True) for t in SPECIAL + PLAN_TOKENS]
    return dict(version="1.0", truncation=None, padding=None, added_tokens=added,
                normalizer=dict(type="Lowercase"), pre_tokenizer=dict(type="Whitespace"), post_processor=None,
                decoder=dict(type="WordPiece", prefix="##", cleanup=False),
                model=dict(type="WordLevel", vocab=vocab, unk_token="[UNK]"))


def encode_conversation(conv, vocab):
    """Token ids and a loss mask that is 1 on assistant content and its closing <|end|>."""
    unk = vocab["[UNK]"]
    ids, mask = [], []
    for message in conv["messages"]:
        role = "<|%s|>" % message["role"]
        ids.append(vocab[role])
        mask.append(0)
        body = [vocab.get(w, unk) for w in words(message["content"])]
        learn = 1 if message["role"] == "assistant" else 0
        if learn:
            body.append(vocab["<|end|>"])
        ids += body
        mask += [learn] * len(body)
    return ids[:MAX_LEN], mask[:MAX_LEN]


# ---------------------------------------------------------------- model
class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.kv, self.hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        d = c["hidden_size"]
        self.q_proj = nn.Linear(d, self.h * self.hd, bias=False)
        self.k_proj = nn.Linear(d, self.kv * self.hd, bias=False)
        self.v_proj = nn.Linear(d, self.kv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.h * self.hd, d, bias=False)

    def forward(self, x, cos, sin, bias, past_k=None, past_v=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.h, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv, self.hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if past_k is not None:
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        present = (k, v)
        # Grouped-query attention: expand+reshape (repeat_interleave exports a graph that fails in ORT).
        rep = self.h // self.kv
        k = k[:, :, None].expand(b, self.kv, rep, k.shape[2], self.hd).reshape(b, self.h, k.shape[2], self.hd)
        v = v[:, :, None].expand(b, self.kv, rep, v.shape[2], self.hd).reshape(b, self.h, v.shape[2], self.hd)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + bias
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, self.h * self.hd)
        return self.o_proj(y), present


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f = c["hidden_size"], c["intermediate_size"]
        self.gate_proj, self.up_proj = nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(c["hidden_size"]), RMSNorm(c["hidden_size"])
        self.self_attn, self.mlp = Attention(c), MLP(c)

    def forward(self, x, cos, sin, bias, past_k=None, past_v=None):
        a, present = self.self_attn(self.input_layernorm(x), cos, sin, bias, past_k, past_v)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x)), present


class Llama(nn.Module):
    """Module names follow Hugging Face's LlamaForCausalLM so exported node names look like optimum's."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"])
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, c["head_dim"], 2).float() / c["head_dim"]))
        self.register_buffer("inv_freq", inv, persistent=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, input_ids, attention_mask, position_ids, past=None):
        """Returns logits, presents [(k, v)] and hidden states (embeddings, then each layer; the last one
        after the final norm, as Hugging Face does)."""
        x = self.embed_tokens(input_ids)
        freqs = position_ids[:, None, :, None].float() * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos(), emb.sin()
        past_len = past[0][0].shape[2] if past is not None else 0
        total = past_len + input_ids.shape[1]
        query_pos = torch.arange(input_ids.shape[1], device=x.device)[:, None] + past_len
        key_pos = torch.arange(total, device=x.device)[None, :]
        allowed = (key_pos <= query_pos)[None, None] & (attention_mask[:, None, None, :] > 0)
        bias = torch.zeros(allowed.shape, device=x.device).masked_fill(~allowed, -1e9)
        hidden, presents = [x], []
        for i, layer in enumerate(self.layers):
            pk, pv = (past[i] if past is not None else (None, None))
            x, present = layer(x, cos, sin, bias, pk, pv)
            presents.append(present)
            hidden.append(x)
        x = self.norm(x)
        hidden[-1] = x
        return self.lm_head(x), presents, hidden


def model_config(name, vocab_size):
    c = {k: v for k, v in CONFIGS[name].items() if k not in ("steps", "batch", "lr")}
    c.update(vocab_size=vocab_size, head_dim=c["hidden_size"] // c["num_attention_heads"], rope_theta=10000.0)
    return c


# ---------------------------------------------------------------- training
def load_checkpoint(folder):
    path = os.path.join(folder, "last.pt")
    return torch.load(path, map_location="cpu") if os.path.exists(path) else None


def augment(tokens, loss_mask, generator, unk, word_dropout, unk_insertion):
    """Unknown-word robustness: user words become [UNK] (share `word_dropout`) and stray [UNK]s are inserted
    (share `unk_insertion`), as unseen phrasing would produce, so [UNK] is a trained embedding and the model
    leans on the words it knows; plan tokens (learned targets) are never touched."""
    out_ids, out_mask = [], []
    draws = torch.rand(len(tokens), 2, generator=generator).tolist()
    first_word = len(SPECIAL) + len(PLAN_TOKENS)
    for token, learn, (drop, insert) in zip(tokens, loss_mask, draws):
        user_word = not learn and token >= first_word
        if user_word and insert < unk_insertion:
            out_ids.append(unk)
            out_mask.append(0)
        out_ids.append(unk if user_word and drop < word_dropout else token)
        out_mask.append(learn)
    return out_ids[:MAX_LEN], out_mask[:MAX_LEN]


def batches(encoded, batch, generator, unk, word_dropout, unk_insertion):
    while True:
        order = torch.randperm(len(encoded), generator=generator).tolist()
        # Batches of similar lengths (sorted within pools of 64 batches) waste little compute on padding.
        pool = 64 * batch
        order = [i for s in range(0, len(order), pool) for i in sorted(order[s:s + pool], key=lambda i: len(encoded[i][0]))]
        starts = list(range(0, len(order) - batch + 1, batch))
        for start in (starts[j] for j in torch.randperm(len(starts), generator=generator).tolist()):
            chunk = [augment(*encoded[i], generator, unk, word_dropout, unk_insertion)
                     for i in order[start:start + batch]]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.zeros(batch, width, dtype=torch.long)
            mask = torch.zeros(batch, width, dtype=torch.long)
            learn = torch.zeros(batch, width)
            for row, (tokens, loss_mask) in enumerate(chunk):
                ids[row, :len(tokens)] = torch.tensor(tokens)
                mask[row, :len(tokens)] = 1
                learn[row, :len(tokens)] = torch.tensor(loss_mask, dtype=torch.float)
            yield ids, mask, learn


def train(args):
    torch.manual_seed(args.seed)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: this PyTorch sees no CUDA device")
    device = torch.device(args.device)
    conversations = [json.loads(line) for line in open(args.corpus)]
    os.makedirs(args.out, exist_ok=True)
    state = load_checkpoint(args.out) if args.resume else None
    vocab = state["vocab"] if state else build_vocab(conversations)
    config = state["config"] if state else model_config(args.config, len(vocab))
    hp = CONFIGS[args.config]
    steps = args.steps or hp["steps"]
    model = Llama(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=hp["lr"], weight_decay=0.01, betas=(0.9, 0.95))
    step, wall = 0, 0.0
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, wall = state["step"], state["wall"]
    encoded = [encode_conversation(c, vocab) for c in conversations]
    generator = torch.Generator().manual_seed(args.seed + step)
    stream = batches(encoded, hp["batch"], generator, vocab["[UNK]"], args.word_dropout, args.unk_insertion)
    os.makedirs(os.path.join(args.log_root, "logs"), exist_ok=True)
    log = Log(args.log_root, "planner", state["step"] if state else None)
    warmup = max(1, steps // 20)
    print(f"planner: {sum(p.numel() for p in model.parameters())} parameters, vocab {len(vocab)}, "
          f"{len(encoded)} conversations, steps {step}->{steps}", flush=True)
    tick = time.time()
    while step < steps:
        lr = hp["lr"] * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        ids, mask, learn = (t.to(device) for t in next(stream))
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        logits, _, _ = model(ids, mask, positions)
        loss_all = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                   reduction="none")
        weights = learn[:, 1:].reshape(-1)
        loss = (loss_all * weights).sum() / weights.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0 or step == steps:
            wall += time.time() - tick
            tick = time.time()
            log.write(step=step, loss=loss.item(), lr=lr, wall=round(wall))
            save_checkpoint(os.path.join(args.out, "last.pt"),
                            dict(model=model.state_dict(), opt=opt.state_dict(), step=step, wall=wall, vocab=vocab,
                                 config=config, corpus=args.corpus, seed=args.seed))
            log.plot(["loss"], "planner")


# ---------------------------------------------------------------- export (transformers.js layout)
class ExportWrapper(nn.Module):
    def __init__(self, model, with_hidden):
        super().__init__()
        self.model, self.with_hidden = model, with_hidden

    def forward(self, input_ids, attention_mask, position_ids, *flat_past):
        past = [(flat_past[2 * i], flat_past[2 * i + 1]) for i in range(len(flat_past) // 2)]
        logits, presents, hidden = self.model(input_ids, attention_mask, position_ids, past)
        outputs = [logits] + [t for kv in presents for t in kv]
        return tuple(outputs + (hidden if self.with_hidden else []))


def export_onnx(model, path, with_hidden):
    c = model.c
    n, kv, hd = c["num_hidden_layers"], c["num_key_value_heads"], c["head_dim"]
    b, t, p = 1, 3, 2
    inputs = [torch.ones(b, t, dtype=torch.long), torch.ones(b, p + t, dtype=torch.long),
              torch.arange(p, p + t)[None]]
    inputs += [torch.randn(b, kv, p, hd) for _ in range(2 * n)]
    names_in = ["input_ids", "attention_mask", "position_ids"]
    names_in += [f"past_key_values.{i}.{kind}" for i in range(n) for kind in ("key", "value")]
    names_out = ["logits"] + [f"present.{i}.{kind}" for i in range(n) for kind in ("key", "value")]
    if with_hidden:
        names_out += [f"hidden_states.{i}" for i in range(n + 1)]
    axes = {"input_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
            "position_ids": {0: "batch_size", 1: "sequence_length"},
            "logits": {0: "batch_size", 1: "sequence_length"}}
    for name in names_in[3:]:
        axes[name] = {0: "batch_size", 2: "past_sequence_length"}
    for name in names_out:
        if name.startswith("present"):
            axes[name] = {0: "batch_size", 2: "total_sequence_length"}
        elif name.startswith("hidden_states"):
            axes[name] = {0: "batch_size", 1: "sequence_length"}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.onnx.export(ExportWrapper(model, with_hidden).eval(), tuple(inputs), path, input_names=names_in,
                      output_names=names_out, dynamic_axes=axes, opset_version=14, do_constant_folding=True)
    import onnx
    onnx.checker.check_model(onnx.load(path))


def export(args):
    state = load_checkpoint(args.ckpt)
    config, vocab = state["config"], state["vocab"]
    model = Llama(config)
    model.load_state_dict(state["model"])
    model.eval()
    out = args.out
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    export_onnx(model, os.path.join(out, "onnx", "model.onnx"), with_hidden=not args.no_hidden_states)
    end = vocab["<|end|>"]
    hf = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=config["vocab_size"],
              hidden_size=config["hidden_size"], intermediate_size=config["intermediate_size"],
              num_hidden_layers=config["num_hidden_layers"], num_attention_heads=config["num_attention_heads"],
              num_key_value_heads=config["num_key_value_heads"], head_dim=config["head_dim"],
              rope_theta=config["rope_theta"], rms_norm_eps=1e-6, max_position_embeddings=1024,
              hidden_act="silu", tie_word_embeddings=False, bos_token_id=end, eos_token_id=end,
              pad_token_id=vocab["[PAD]"], torch_dtype="float32")
    generation = dict(bos_token_id=end, eos_token_id=end, pad_token_id=vocab["[PAD]"], max_new_tokens=96,
                      do_sample=False)
    tokenizer_config = dict(tokenizer_class="PreTrainedTokenizerFast", model_max_length=1024,
                            pad_token="[PAD]", unk_token="[UNK]", eos_token="<|end|>", bos_token=None,
                            chat_template=CHAT_TEMPLATE, clean_up_tokenization_spaces=False)
    for name, body in [("config.json", hf), ("generation_config.json", generation),
                       ("tokenizer.json", tokenizer_json(vocab)), ("tokenizer_config.json", tokenizer_config)]:
        with open(os.path.join(out, name), "w") as f:
            json.dump(body, f, indent=1)
    training = dict(steps=state["step"], wall_seconds=round(state["wall"]), seed=state["seed"],
                    corpus=os.path.basename(state["corpus"]),
                    parameters=sum(p.numel() for p in model.parameters()))
    with open(os.path.join(out, "training.json"), "w") as f:
        json.dump(training, f, indent=1)
    print(f"exported planner to {out}: {training}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--corpus", required=True)
    t.add_argument("--out", default="training/checkpoints/planner")
    t.add_argument("--config", default="default", choices=sorted(CONFIGS))
    t.add_argument("--steps", type=int, default=0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.add_argument("--log-root", default="training", help="logs go to LOG_ROOT/logs/planner.{jsonl,png}")
    t.add_argument("--resume", action="store_true")
    t.add_argument("--word-dropout", type=float, default=0.06, help="share of user words replaced by [UNK]")
    t.add_argument("--unk-insertion", type=float, default=0.0, help="share of user words preceded by a stray [UNK]")
    e = sub.add_parser("export")
    e.add_argument("--ckpt", default="training/checkpoints/planner")
    e.add_argument("--out", default="models/planner")
    e.add_argument("--no-hidden-states", action="store_true", help="export without hidden_states.{i} outputs")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
    train(args) if args.command == "train" else export(args)


if __name__ == "__main__":
    main()
