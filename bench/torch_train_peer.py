"""PyTorch peer of bench/suites/train.ts: the same LLaMA training step, in pure torch.

Usage: python3 bench/torch_train_peer.py --config '{"model_type": "llama", ...}' --batch 2 --seq 128
           [--steps 3] [--device cpu|cuda] [--threads N]
Prints one JSON line: {"tokens_per_s", "step_ms", "params", "device", "torch", "threads", "blas", "blas_lib",
"blas_path", "loss"} (blas*: what torch ran with, bench/torch_env.py).

The model is HF LlamaForCausalLM as tools/parity_reference.py re-implements it (its Cfg gives the parameter
names and shapes; the forward below is the same computation written device-agnostic, since the reference
builds its mask and rotary tables on the CPU): embedding, per layer RMSNorm → q/k/v projections → RoPE
(rotate-half) → causal attention with GQA (torch's scaled_dot_product_attention when it exists, else the
eager softmax(q·kᵀ/√d + mask)·v) → o_proj + residual → RMSNorm → down(silu(gate) · up) + residual; final
norm, lm_head (or tied embeddings), HF's shifted cross-entropy. f32 throughout (TF32 off on CUDA), weights
~ normal(0, initializer_range), torch.optim.AdamW(lr=1e-4) — what src/nn + src/optim do.
One step = forward + loss + backward + AdamW step + zero_grad(set_to_none) and a sync (loss.item()). One
warm-up step, then the median of --steps steps, wall-clock. On CPU torch uses all cores unless --threads.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from parity_reference import Cfg, act_fn, rope_inv_freq  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_env import ran_with, set_threads  # noqa: E402


def rmsnorm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def attention(q, k, v):
    """q [B, Hq, T, Dh], k/v [B, Hkv, T, Dh], causal."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    t = q.shape[2]
    w = torch.matmul(q, k.transpose(2, 3)) * q.shape[-1] ** -0.5
    w = w.masked_fill(torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return torch.matmul(F.softmax(w, dim=-1), v)


def forward_loss(cfg, P, ids, cos, sin):
    b, t = ids.shape
    x = F.embedding(ids, P["model.embed_tokens.weight"])
    act = act_fn(cfg.act)

    def lin(v, name):
        return F.linear(v, P[name + ".weight"], P.get(name + ".bias"))

    for l in range(cfg.layers):
        p = f"model.layers.{l}"
        h = rmsnorm(x, P[f"{p}.input_layernorm.weight"], cfg.eps)
        q = lin(h, f"{p}.self_attn.q_proj").view(b, t, cfg.heads, cfg.head_dim).transpose(1, 2)
        k = lin(h, f"{p}.self_attn.k_proj").view(b, t, cfg.kv, cfg.head_dim).transpose(1, 2)
        v = lin(h, f"{p}.self_attn.v_proj").view(b, t, cfg.kv, cfg.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        o = attention(q, k, v).transpose(1, 2).reshape(b, t, -1)
        x = x + lin(o, f"{p}.self_attn.o_proj")
        h = rmsnorm(x, P[f"{p}.post_attention_layernorm.weight"], cfg.eps)
        x = x + lin(act(lin(h, f"{p}.mlp.gate_proj")) * lin(h, f"{p}.mlp.up_proj"), f"{p}.mlp.down_proj")
    x = rmsnorm(x, P["model.norm.weight"], cfg.eps)
    logits = F.linear(x, P["model.embed_tokens.weight"] if cfg.tie else P["lm_head.weight"])
    labels = F.pad(ids[:, 1:], (0, 1), value=-100)
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="HF config.json contents (JSON) or a path to one")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    raw = json.loads(open(a.config).read() if os.path.exists(a.config) else a.config)
    cfg = Cfg(raw)
    dev = torch.device(a.device)
    if dev.type == "cpu":
        set_threads(a.threads)
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    std = raw.get("initializer_range", 0.02)
    P = {}
    for name, shape in cfg.param_shapes():
        if name.endswith("norm.weight"):
            t = torch.ones(shape, device=dev)
        elif name.endswith(".bias"):
            t = torch.zeros(shape, device=dev)
        else:
            t = torch.randn(shape, device=dev) * std
        P[name] = t.requires_grad_(True)
    opt = torch.optim.AdamW(list(P.values()), lr=1e-4)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, cfg.vocab, (a.batch, a.seq), generator=g).to(dev)

    def step():
        # Rotary tables are part of HF's forward (LlamaRotaryEmbedding), so they are rebuilt every step.
        inv = rope_inv_freq(cfg, a.seq).to(dev)
        freqs = torch.outer(torch.arange(a.seq, device=dev, dtype=torch.float32), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        loss = forward_loss(cfg, P, ids, emb.cos()[None, None], emb.sin()[None, None])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    step()
    times = []
    loss = math.nan
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    times.sort()
    s = times[len(times) // 2] if len(times) % 2 else (times[len(times) // 2 - 1] + times[len(times) // 2]) / 2
    print(
        json.dumps(
            {
                "tokens_per_s": a.batch * a.seq / s,
                "step_ms": s * 1e3,
                "params": sum(p.numel() for p in P.values()),
                "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
                **ran_with(),
                "loss": loss,
            }
        )
    )


if __name__ == "__main__":
    main()
