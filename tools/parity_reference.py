#!/usr/bin/python3
"""
PyTorch parity reference for alignx's LLaMA-family model (src/nn/llama.ts): a pure-torch re-implementation of
Hugging Face transformers' LlamaForCausalLM forward and loss (modeling_llama.py; the Mistral and Gemma variants
that src/io/hf_config.ts normalizes), with no `transformers` and no `safetensors` package (safetensors files are
read and written by hand). Runs with Debian's python3 and torch 1.13:

  /usr/bin/python3 tools/parity_reference.py init CONFIG.json OUTDIR [--seed N] [--dtype F32|BF16]
      a random model with HF parameter names: OUTDIR/config.json + OUTDIR/model.safetensors
  /usr/bin/python3 tools/parity_reference.py run MODELDIR BATCH.json OUT.safetensors [--dtype float64|float32]
      forward + loss + backward of BATCH.json ({input_ids, labels?, attention_mask?}) and writes OUT.safetensors:
      logits F32 [B, T, V], loss F32 [] (a 0-d scalar), grad.<HF name> F32 for every parameter, and
      hidden_states.<i> F32 [B, T, D] (HF output_hidden_states: 0 = embeddings, i = output of layer i for
      i < L, L = the final norm's output)
  /usr/bin/python3 tools/parity_reference.py run MODELDIR BATCH.json OUT.safetensors --stage 1 [--classifier FILE]
      AlignX stage 1 (../shared/ALIGNX.md): BATCH.json also holds src_tgt_index, src_lang, tgt_lang; the settings
      come from MODELDIR/config.json under the reference's names (align_layer default L // 2, contrastive_lambda
      0.3, contrastive_temperature 0.1, language_matching_lambda 0.4, language_matching_intermediate_size 128).
      The classifier's weights (language_matching_classifier.{gate,up,down}_proj.weight) come from MODELDIR's
      safetensors when there, else from FILE (e.g. what `alignx parity --stage 1` wrote: it writes the weights it
      initialized). The losses are tools/goldens/alignx_losses.py's (the reference's code restated), imported.
      OUT adds loss_ntp, loss_ctr, loss_lam, grad.language_matching_classifier.*, and the classifier's weights
      when they came from FILE; loss = loss_ntp + 0.3 loss_ctr + 0.4 loss_lam (the configured λ's).
  /usr/bin/python3 tools/parity_reference.py fixtures [--out test/fixtures/parity]
      regenerate the committed fixtures (four tiny models, a batch each, the expected outputs)
  /usr/bin/python3 tools/parity_reference.py fixtures-stage1 [--out test/fixtures/parity]
      write batch_stage1.json for the four fixtures, run `bun run alignx parity --stage 1` on each (for the
      classifier it initializes from its fixed seed) and write expected_stage1.safetensors with that classifier

What follows HF exactly, and the three places where it deliberately does not:
  - Embedding: F.embedding with padding_idx = pad_token_id (HF builds nn.Embedding(V, D, pad_token_id), whose
    backward gives the padding row no gradient from the lookup). Gemma multiplies by
    torch.tensor(hidden_size ** 0.5, dtype) (rounded to the dtype, as HF does).
  - RoPE: inv_freq = 1 / (theta ** (arange(0, Dh, 2).float() / Dh)) in float32, rope scaling (linear, dynamic,
    llama3) as transformers' modeling_rope_utils, angles inv_freq @ positions and their cos/sin in float32
    (HF forces float32 there), cast to the model dtype; rotate_half convention. position_ids default to
    arange(T) whatever the attention mask says (HF's forward; only generate() derives them from the mask).
  - Attention: eager path: q·kᵀ · head_dim^-0.5, repeat_kv for GQA/MQA, the 4-D additive mask of
    _prepare_4d_causal_attention_mask_with_cache_position (finfo(dtype).min where j > i or mask[j] == 0),
    softmax, · v. A query row that sees no key (a left-padding position) gets uniform weights over all keys in
    HF eager (every score becomes finfo.min); alignx's attention gives 0 there. Such positions are garbage in
    both, and the committed fixtures keep them out of the loss (labels -100), so they only matter for the
    logits/hidden states at those positions, which the tests skip.
  - RMSNorm (LLaMA: w * norm(x) cast back; Gemma: norm(x) * (1 + w) then cast), softmax and the loss: HF
    upcasts these to float32. Here they run in float32 OR WIDER (torch.promote_types(dtype, float32)): in the
    default float64 run they stay float64 instead of being rounded to float32 mid-model; with --dtype float32
    the run is HF verbatim.
  - MLP: down(act(gate(x)) * up(x)); act = silu | gelu (erf) | gelu_pytorch_tanh. Biases where attention_bias /
    mlp_bias say.
  - Loss: HF's shifted cross-entropy: logits[:, :-1] against labels[:, 1:], ignore_index -100, mean over the
    kept positions. Labels default to input_ids here (HF computes no loss without labels); padding is NOT
    masked unless the labels say -100, as in HF.
  - Tied embeddings (tie_word_embeddings): lm_head uses embed_tokens.weight; its gradient is the sum of both uses.
"""
import argparse
import json
import math
import os
import struct
import sys

import subprocess
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens"))
import alignx_losses  # noqa: E402  (the stage-1 losses, shared with the goldens)

CLASSIFIER = "language_matching_classifier"

# ---- safetensors by hand ----------------------------------------------------------------------------------

ST_NP = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1", "BF16": "<u2"}


def read_safetensors(path):
    """name -> float64/int64 torch tensor (BF16/F16/F32 widen exactly)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = np.frombuffer(blob[base + b : base + end], dtype=ST_NP[e["dtype"]])
        if e["dtype"] == "BF16":
            arr = (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        elif e["dtype"] in ("I64", "I32"):
            arr = raw.astype(np.int64)
        else:
            arr = raw.astype(np.float64)
        out[name] = torch.from_numpy(arr.copy()).reshape(e["shape"])
    return out


def f32_to_bf16_bits(a):
    """Round-to-nearest-even float32 -> bfloat16 bits (no NaNs expected here)."""
    u = np.ascontiguousarray(a, dtype="<f4").view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r


def write_safetensors(path, tensors, dtypes=None, metadata=None):
    """tensors: name -> torch tensor (floats written as F32 unless dtypes[name] says BF16 / F64)."""
    dtypes = dtypes or {}
    header = {"__metadata__": metadata or {"format": "pt"}}
    chunks = []
    pos = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu()
        dt = dtypes.get(name, "F32")
        if dt == "BF16":
            data = f32_to_bf16_bits(t.to(torch.float32).numpy()).astype("<u2").tobytes()
        elif dt == "F32":
            data = t.to(torch.float32).numpy().astype("<f4").tobytes()
        elif dt == "F64":
            data = t.to(torch.float64).numpy().astype("<f8").tobytes()
        else:
            raise ValueError(f"dtype {dt}")
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [pos, pos + len(data)]}
        chunks.append(data)
        pos += len(data)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)
    os.replace(tmp, path)


# ---- config (the subset of transformers' defaults that src/io/hf_config.ts also applies) --------------------

DEFAULTS = {
    "llama": {"tie": False, "pad": None},
    "mistral": {"tie": False, "pad": None},
    "gemma": {"tie": True, "pad": 0},
}


class Cfg:
    def __init__(self, raw):
        self.raw = raw
        t = raw["model_type"]
        assert t in DEFAULTS, f"model_type {t}"
        self.type = t
        self.hidden = raw["hidden_size"]
        self.inter = raw["intermediate_size"]
        self.layers = raw["num_hidden_layers"]
        self.heads = raw["num_attention_heads"]
        self.kv = raw.get("num_key_value_heads") or self.heads
        self.head_dim = raw.get("head_dim") or self.hidden // self.heads
        self.vocab = raw["vocab_size"]
        self.eps = raw.get("rms_norm_eps", 1e-6)
        self.theta = raw.get("rope_theta", 10000.0)
        self.rope_scaling = raw.get("rope_scaling")
        self.max_pos = raw.get("max_position_embeddings", 2048)
        self.tie = raw.get("tie_word_embeddings", DEFAULTS[t]["tie"])
        self.attn_bias = raw.get("attention_bias", False)
        self.mlp_bias = raw.get("mlp_bias", False)
        self.pad = raw.get("pad_token_id", DEFAULTS[t]["pad"])
        if self.pad == -1:
            self.pad = None
        if t == "gemma":
            self.act = raw.get("hidden_activation") or "gelu_pytorch_tanh"
        else:
            self.act = raw.get("hidden_act", "silu")

    def param_shapes(self):
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv * self.head_dim, self.inter
        out = [("model.embed_tokens.weight", [self.vocab, h])]
        for l in range(self.layers):
            p = f"model.layers.{l}"
            for name, o, inp, bias in [
                ("self_attn.q_proj", q, h, self.attn_bias),
                ("self_attn.k_proj", kv, h, self.attn_bias),
                ("self_attn.v_proj", kv, h, self.attn_bias),
                ("self_attn.o_proj", h, q, self.attn_bias),
                ("mlp.gate_proj", i, h, self.mlp_bias),
                ("mlp.up_proj", i, h, self.mlp_bias),
                ("mlp.down_proj", h, i, self.mlp_bias),
            ]:
                out.append((f"{p}.{name}.weight", [o, inp]))
                if bias:
                    out.append((f"{p}.{name}.bias", [o]))
            out.append((f"{p}.input_layernorm.weight", [h]))
            out.append((f"{p}.post_attention_layernorm.weight", [h]))
        out.append(("model.norm.weight", [h]))
        if not self.tie:
            out.append(("lm_head.weight", [self.vocab, h]))
        return out


# ---- the model ----------------------------------------------------------------------------------------------


def upcast(dtype):
    """HF's `.to(torch.float32)` / `dtype=torch.float32`, but never narrowing (see the module comment)."""
    return torch.promote_types(dtype, torch.float32)


def rope_inv_freq(cfg, seq_len):
    """transformers' modeling_rope_utils, in float32 as HF computes it."""
    dim = cfg.head_dim
    base = cfg.theta
    rs = cfg.rope_scaling
    kind = None if rs is None else rs.get("rope_type", rs.get("type"))
    if kind == "dynamic" and seq_len > cfg.max_pos:
        factor = rs["factor"]
        base = base * ((factor * seq_len / cfg.max_pos) - (factor - 1)) ** (dim / (dim - 2))
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    if kind == "linear":
        inv = inv / rs["factor"]
    elif kind == "llama3":
        factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wl) * ~(wavelen > low_wl)
        inv = torch.where(medium, smoothed, inv_l)
    return inv


def rope_cos_sin(cfg, position_ids, dtype):
    seq_len = int(position_ids.max()) + 1
    inv = rope_inv_freq(cfg, seq_len)
    inv_e = inv[None, :, None].float().expand(position_ids.shape[0], -1, 1)
    pos_e = position_ids[:, None, :].float()
    freqs = (inv_e.float() @ pos_e.float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(x, n):
    b, h, s, d = x.shape
    if n == 1:
        return x
    return x[:, :, None, :, :].expand(b, h, n, s, d).reshape(b, h * n, s, d)


def rmsnorm(cfg, x, w):
    wide = upcast(x.dtype)
    if cfg.type == "gemma":
        xf = x.to(wide)
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + cfg.eps)
        return (out * (1.0 + w.to(wide))).type_as(x)
    xf = x.to(wide)
    var = xf.pow(2).mean(-1, keepdim=True)
    xf = xf * torch.rsqrt(var + cfg.eps)
    return w * xf.to(x.dtype)


def causal_mask_4d(attention_mask, b, t, dtype):
    """_prepare_4d_causal_attention_mask_with_cache_position (no cache: cache_position = arange(T))."""
    min_dtype = torch.finfo(dtype).min
    m = torch.full((t, t), fill_value=min_dtype, dtype=dtype)
    m = torch.triu(m, diagonal=1)
    m = m * (torch.arange(t) > torch.arange(t).reshape(-1, 1))
    m = m[None, None, :, :].expand(b, 1, -1, -1)
    if attention_mask is not None:
        m = m.clone()
        pad = (m[:, :, :, :t] + attention_mask[:, None, None, :].to(dtype)) == 0
        m[:, :, :, :t] = m[:, :, :, :t].masked_fill(pad, min_dtype)
    return m


def act_fn(name):
    if name == "silu":
        return F.silu
    if name == "gelu":
        return F.gelu
    if name == "gelu_pytorch_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    raise ValueError(f"activation {name}")


def forward(cfg, P, input_ids, attention_mask=None, position_ids=None, dtype=torch.float64):
    """Returns (logits [B, T, V], hidden_states tuple of L + 1)."""
    b, t = input_ids.shape
    x = F.embedding(input_ids, P["model.embed_tokens.weight"], padding_idx=cfg.pad)
    if cfg.type == "gemma":
        x = x * torch.tensor(cfg.hidden**0.5, dtype=x.dtype)
    if position_ids is None:
        position_ids = torch.arange(t).unsqueeze(0)
    mask = causal_mask_4d(attention_mask, b, t, dtype)
    cos, sin = rope_cos_sin(cfg, position_ids, dtype)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    act = act_fn(cfg.act)
    scaling = cfg.head_dim**-0.5
    groups = cfg.heads // cfg.kv

    def lin(v, name):
        return F.linear(v, P[name + ".weight"], P.get(name + ".bias"))

    hidden = []
    for l in range(cfg.layers):
        p = f"model.layers.{l}"
        hidden.append(x)
        residual = x
        h = rmsnorm(cfg, x, P[f"{p}.input_layernorm.weight"])
        q = lin(h, f"{p}.self_attn.q_proj").view(b, t, cfg.heads, cfg.head_dim).transpose(1, 2)
        k = lin(h, f"{p}.self_attn.k_proj").view(b, t, cfg.kv, cfg.head_dim).transpose(1, 2)
        v = lin(h, f"{p}.self_attn.v_proj").view(b, t, cfg.kv, cfg.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = repeat_kv(k, groups)
        v = repeat_kv(v, groups)
        w = torch.matmul(q, k.transpose(2, 3)) * scaling
        w = w + mask[:, :, :, :t]
        w = F.softmax(w, dim=-1, dtype=upcast(dtype)).to(dtype)
        o = torch.matmul(w, v).transpose(1, 2).contiguous().reshape(b, t, -1)
        x = residual + lin(o, f"{p}.self_attn.o_proj")
        residual = x
        h = rmsnorm(cfg, x, P[f"{p}.post_attention_layernorm.weight"])
        x = residual + lin(act(lin(h, f"{p}.mlp.gate_proj")) * lin(h, f"{p}.mlp.up_proj"), f"{p}.mlp.down_proj")
    x = rmsnorm(cfg, x, P["model.norm.weight"])
    hidden.append(x)
    head = P["model.embed_tokens.weight"] if cfg.tie else P["lm_head.weight"]
    logits = F.linear(x, head)
    return logits, tuple(hidden)


def causal_lm_loss(logits, labels):
    """HF ForCausalLMLoss: upcast, pad labels with -100 and shift, mean cross-entropy over kept positions."""
    logits = logits.to(upcast(logits.dtype))
    labels = F.pad(labels, (0, 1), value=-100)
    shift = labels[..., 1:].contiguous()
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), shift.view(-1), ignore_index=-100, reduction="mean")


# ---- commands -----------------------------------------------------------------------------------------------


def init_model(config_path, outdir, seed=0, store="BF16"):
    with open(config_path) as f:
        raw = json.load(f)
    cfg = Cfg(raw)
    g = torch.Generator().manual_seed(seed)
    P = {}
    for name, shape in cfg.param_shapes():
        if name.endswith("norm.weight"):
            base = 0.0 if cfg.type == "gemma" else 1.0
            v = base + 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif name.endswith(".bias"):
            v = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif name == "model.embed_tokens.weight":
            std = 0.2 if cfg.tie else 1.0
            v = std * torch.randn(shape, generator=g, dtype=torch.float64)
        else:  # linear weights [out, in]: unit-scale activations
            v = torch.randn(shape, generator=g, dtype=torch.float64) / math.sqrt(shape[1])
        P[name] = v
    os.makedirs(outdir, exist_ok=True)
    raw = dict(raw)
    raw["torch_dtype"] = "bfloat16" if store == "BF16" else "float32"
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(raw, f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(outdir, "model.safetensors"), P, {k: store for k in P})


def load_batch(path):
    with open(path) as f:
        doc = json.load(f)
    ids = torch.tensor(doc["input_ids"], dtype=torch.int64)
    labels = torch.tensor(doc["labels"], dtype=torch.int64) if doc.get("labels") is not None else None
    mask = torch.tensor(doc["attention_mask"], dtype=torch.int64) if doc.get("attention_mask") is not None else None
    return ids, labels, mask


def stage1_settings(raw):
    layers = raw["num_hidden_layers"]
    get = lambda k, d: raw[k] if raw.get(k) is not None else d
    return {
        "align_layer": int(get("align_layer", layers // 2)),
        "contrastive_lambda": float(get("contrastive_lambda", 0.3)),
        "contrastive_temperature": float(get("contrastive_temperature", 0.1)),
        "language_matching_lambda": float(get("language_matching_lambda", 0.4)),
        "language_matching_intermediate_size": int(get("language_matching_intermediate_size", 128)),
    }


def run(model_dir, batch_path, out_path, dtype=torch.float64, stage=0, classifier_file=None):
    with open(os.path.join(model_dir, "config.json")) as f:
        raw = json.load(f)
    cfg = Cfg(raw)
    P = {k: v.to(dtype).requires_grad_(True) for k, v in read_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
    names = [f"{CLASSIFIER}.{p}_proj.weight" for p in ("gate", "up", "down")]
    C, from_file = {}, False
    if stage == 1:
        C = {k: P.pop(k) for k in names if k in P}
        if len(C) != 3:
            assert not C, f"{model_dir} holds only some classifier weights: {sorted(C)}"
            assert classifier_file, "--stage 1: the model has no classifier weights; pass --classifier FILE"
            src = read_safetensors(classifier_file)
            C = {k: src[k].to(dtype).requires_grad_(True) for k in names}
            from_file = True
    want = {n for n, _ in cfg.param_shapes()}
    assert set(P) == want, f"parameters differ: {sorted(set(P) ^ want)}"
    ids, labels, mask = load_batch(batch_path)
    logits, hidden = forward(cfg, P, ids, mask, dtype=dtype)
    loss = causal_lm_loss(logits, labels if labels is not None else ids)
    out = {}
    if stage == 1:
        with open(batch_path) as f:
            doc = json.load(f)
        idx = torch.tensor(doc["src_tgt_index"], dtype=torch.int64)
        sl = torch.tensor(doc["src_lang"], dtype=torch.int64)
        tl = torch.tensor(doc["tgt_lang"], dtype=torch.int64)
        st = stage1_settings(raw)
        ntp = loss
        ctr = alignx_losses.contrastive(hidden[st["align_layer"]], idx, st["contrastive_temperature"]) if ids.shape[0] > 1 else torch.zeros((), dtype=dtype)
        lam = alignx_losses.language_matching(hidden[-1], idx, sl, tl, C[names[0]], C[names[1]], C[names[2]])
        # The reference's order: (lm_loss + λ_ctr · ctr) + λ_lam · lam
        loss = ntp + st["contrastive_lambda"] * ctr + st["language_matching_lambda"] * lam
        out.update({"loss_ntp": ntp.detach().reshape([]), "loss_ctr": ctr.detach().reshape([]), "loss_lam": lam.detach().reshape([])})
        if from_file:
            out.update({k: v.detach() for k, v in C.items()})
    loss.backward()
    out = {"logits": logits.detach(), "loss": loss.detach().reshape([]), **out}
    for i, h in enumerate(hidden):
        out[f"hidden_states.{i}"] = h.detach()
    for k, v in {**P, **C}.items():
        out[f"grad.{k}"] = v.grad
    write_safetensors(out_path, out)
    return float(loss), max(float(v.grad.abs().max()) for v in {**P, **C}.values())


# ---- the committed fixtures ---------------------------------------------------------------------------------

# Four tiny models (hidden <= 48, 2 layers, vocab <= 96), B = 2, T <= 9, one padded row each.
FIXTURES = {
    # LLaMA, multi-head attention, attention and MLP biases; right padding, no labels (= input_ids, padding NOT
    # masked, exactly as HF computes a loss from labels=input_ids), so the padding positions feed the loss and
    # pad_token_id 0 matters: embed_tokens row 0 gets no gradient from its lookups (nn.Embedding padding_idx).
    "llama": {
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "intermediate_size": 40,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 80,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64, "hidden_act": "silu",
            "attention_bias": True, "mlp_bias": True, "tie_word_embeddings": False, "bos_token_id": 1,
            "eos_token_id": 2, "pad_token_id": 0, "initializer_range": 0.02,
        },
        "batch": {
            "input_ids": [[1, 17, 42, 5, 77, 3, 60, 9, 2], [1, 33, 8, 71, 2, 0, 0, 0, 0]],
            "attention_mask": [[1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0, 0, 0]],
        },
    },
    # LLaMA 3.2-style: grouped-query attention (4 heads, 2 kv heads), rope_theta 500000 with llama3 rope scaling
    # (a small original_max_position_embeddings so that the low/medium/high-frequency branches all apply),
    # tied embeddings. Left padding; labels -100 at the padding and at the first real token (whose prediction
    # comes from a padding position that sees no key).
    "llama3": {
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 96,
            "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 128, "hidden_act": "silu",
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 64},
            "tie_word_embeddings": True, "bos_token_id": 90, "eos_token_id": [91, 92], "initializer_range": 0.02,
        },
        "batch": {
            "input_ids": [[90, 12, 55, 7, 81, 30, 44, 2, 91], [0, 0, 0, 90, 64, 19, 27, 88, 91]],
            "attention_mask": [[1, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1, 1]],
            "labels": [[90, 12, 55, 7, 81, 30, 44, 2, 91], [-100, -100, -100, -100, 64, 19, 27, 88, 91]],
        },
    },
    # Mistral: GQA (6 heads, 2 kv heads), rope_theta 1e6, sliding_window 4096 (longer than the batch); right
    # padding with -100 labels there; pad_token_id 0 set, so the embedding's padding row gets no lookup gradient.
    "mistral": {
        "config": {
            "architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 48, "intermediate_size": 48,
            "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 2, "vocab_size": 48,
            "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "max_position_embeddings": 256, "hidden_act": "silu",
            "sliding_window": 4096, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
            "pad_token_id": 0, "initializer_range": 0.02,
        },
        "batch": {
            "input_ids": [[1, 40, 11, 23, 47, 6, 2], [1, 19, 36, 2, 0, 0, 0]],
            "attention_mask": [[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]],
            "labels": [[1, 40, 11, 23, 47, 6, 2], [1, 19, 36, 2, -100, -100, -100]],
        },
    },
    # Gemma: multi-query attention (2 heads, 1 kv head), head_dim 24 != hidden / heads = 16, tied embeddings scaled
    # by sqrt(hidden), GeLU-tanh MLP, RMSNorm (1 + w), pad_token_id 0 (Gemma's default). Left padding, labels -100
    # at the padding and the first real token.
    "gemma": {
        "config": {
            "architectures": ["GemmaForCausalLM"], "model_type": "gemma", "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 24,
            "vocab_size": 80, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 64,
            "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "bos_token_id": 2,
            "eos_token_id": 1, "pad_token_id": 0, "initializer_range": 0.02,
        },
        "batch": {
            "input_ids": [[0, 0, 2, 14, 66, 31, 9, 1], [2, 50, 7, 73, 25, 12, 44, 1]],
            "attention_mask": [[0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]],
            "labels": [[-100, -100, -100, 14, 66, 31, 9, 1], [2, 50, 7, 73, 25, 12, 44, 1]],
        },
    },
}


def make_fixtures(root):
    os.makedirs(root, exist_ok=True)
    for i, (name, spec) in enumerate(FIXTURES.items()):
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        cfg_path = os.path.join(d, "config.json")
        with open(cfg_path, "w") as f:
            json.dump(spec["config"], f, indent=2)
            f.write("\n")
        init_model(cfg_path, d, seed=1000 + i, store="BF16")
        with open(os.path.join(d, "batch.json"), "w") as f:
            json.dump(spec["batch"], f)
            f.write("\n")
        loss, gmax = run(d, os.path.join(d, "batch.json"), os.path.join(d, "expected.safetensors"))
        print(f"{name}: loss {loss:.6f}, max |grad| {gmax:.4g}")


# Stage-1 batches: B = 3, each fixture's two rows plus a third, spans (1 source, 2 target) inside the real tokens
# (past BOS, so the language-matching loss's shifted index sees every span), languages mixed so that the pair
# labels hold both classes and every row's source and target differ.
STAGE1_BATCHES = {
    "llama": {
        "input_ids": [[1, 17, 42, 5, 77, 3, 60, 9, 2], [1, 33, 8, 71, 2, 0, 0, 0, 0], [1, 12, 64, 30, 7, 55, 21, 2, 0]],
        "attention_mask": [[1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1, 0]],
        "src_tgt_index": [[0, 1, 1, 0, 2, 2, 2, 0, 0], [0, 1, 0, 2, 0, 0, 0, 0, 0], [0, 0, 1, 1, 0, 2, 2, 0, 0]],
        "src_lang": [0, 1, 2],
        "tgt_lang": [1, 0, 1],
    },
    "llama3": {
        "input_ids": [[90, 12, 55, 7, 81, 30, 44, 2, 91], [0, 0, 0, 90, 64, 19, 27, 88, 91], [90, 5, 33, 70, 14, 3, 66, 91, 91]],
        "attention_mask": [[1, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1]],
        "labels": [[90, 12, 55, 7, 81, 30, 44, 2, 91], [-100, -100, -100, -100, 64, 19, 27, 88, 91], [90, 5, 33, 70, 14, 3, 66, 91, 91]],
        "src_tgt_index": [[0, 1, 1, 0, 2, 2, 2, 0, 0], [0, 0, 0, 0, 1, 0, 2, 2, 0], [0, 1, 0, 0, 2, 2, 0, 0, 0]],
        "src_lang": [2, 2, 0],
        "tgt_lang": [0, 1, 2],
    },
    "mistral": {
        "input_ids": [[1, 40, 11, 23, 47, 6, 2], [1, 19, 36, 2, 0, 0, 0], [1, 8, 30, 5, 44, 17, 2]],
        "attention_mask": [[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]],
        "labels": [[1, 40, 11, 23, 47, 6, 2], [1, 19, 36, 2, -100, -100, -100], [1, 8, 30, 5, 44, 17, 2]],
        "src_tgt_index": [[0, 1, 1, 0, 2, 2, 0], [0, 1, 2, 0, 0, 0, 0], [0, 0, 1, 0, 2, 2, 0]],
        "src_lang": [3, 1, 1],
        "tgt_lang": [1, 3, 2],
    },
    "gemma": {
        "input_ids": [[0, 0, 2, 14, 66, 31, 9, 1], [2, 50, 7, 73, 25, 12, 44, 1], [2, 9, 41, 3, 70, 18, 1, 0]],
        "attention_mask": [[0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 0]],
        "labels": [[-100, -100, -100, 14, 66, 31, 9, 1], [2, 50, 7, 73, 25, 12, 44, 1], [2, 9, 41, 3, 70, 18, 1, -100]],
        "src_tgt_index": [[0, 0, 0, 1, 0, 2, 2, 0], [0, 1, 1, 0, 2, 2, 2, 0], [0, 1, 0, 2, 2, 0, 0, 0]],
        "src_lang": [0, 1, 0],
        "tgt_lang": [1, 0, 2],
    },
}


def make_stage1_fixtures(root):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        for name, batch in STAGE1_BATCHES.items():
            d = os.path.join(root, name)
            bpath = os.path.join(d, "batch_stage1.json")
            with open(bpath, "w") as f:
                json.dump(batch, f)
                f.write("\n")
            ours = os.path.join(tmp, f"{name}.safetensors")
            subprocess.run(["bun", "run", "src/cli/main.ts", "parity", "--stage", "1", "--model", d, "--batch", bpath, "--out", ours], cwd=repo, check=True)
            loss, gmax = run(d, bpath, os.path.join(d, "expected_stage1.safetensors"), stage=1, classifier_file=ours)
            print(f"{name} stage 1: loss {loss:.6f}, max |grad| {gmax:.4g}")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("init")
    a.add_argument("config")
    a.add_argument("outdir")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--dtype", choices=["F32", "BF16"], default="F32")
    r = sub.add_parser("run")
    r.add_argument("model")
    r.add_argument("batch")
    r.add_argument("out")
    r.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    r.add_argument("--stage", type=int, choices=[0, 1], default=0)
    r.add_argument("--classifier", help="--stage 1: a safetensors file with the classifier's weights (when MODELDIR lacks them)")
    x = sub.add_parser("fixtures")
    x.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "parity"))
    x1 = sub.add_parser("fixtures-stage1")
    x1.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "parity"))
    o = ap.parse_args(argv)
    torch.set_grad_enabled(True)
    if o.cmd == "init":
        init_model(o.config, o.outdir, o.seed, o.dtype)
    elif o.cmd == "run":
        loss, gmax = run(o.model, o.batch, o.out, torch.float64 if o.dtype == "float64" else torch.float32, o.stage, o.classifier)
        print(f"loss {loss:.8g}, max |grad| {gmax:.4g}")
    elif o.cmd == "fixtures-stage1":
        make_stage1_fixtures(os.path.normpath(o.out))
    else:
        make_fixtures(os.path.normpath(o.out))


if __name__ == "__main__":
    main(sys.argv[1:])
