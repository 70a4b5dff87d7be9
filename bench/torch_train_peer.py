"""PyTorch peer of bench/suites/train.ts: the same LLaMA training step, in pure torch.

Usage: python3 bench/torch_train_peer.py --config '{"model_type": "llama", ...}' --batch 2 --seq 128
           [--steps 3] [--device cpu|cuda] [--threads N] [--stage 0|1]
Prints one JSON line: {"tokens_per_s", "step_ms", "params", "device", "torch", "threads", "blas", "blas_lib",
"blas_path", "loss", "loss_init"} (blas*: what torch ran with, bench/torch_env.py; loss_init: the warm-up
step's loss, before any update), plus "terms_init": {"ntp", "ctr", "lam"} with --stage 1.

The model is HF LlamaForCausalLM as tools/parity_reference.py re-implements it (its Cfg gives the parameter
names and shapes; the forward below is the same computation written device-agnostic, since the reference
builds its mask and rotary tables on the CPU): embedding, per layer RMSNorm → q/k/v projections → RoPE
(rotate-half) → causal attention with GQA (torch's scaled_dot_product_attention when it exists, else the
eager softmax(q·kᵀ/√d + mask)·v) → o_proj + residual → RMSNorm → down(silu(gate) · up) + residual; final
norm, lm_head (or tied embeddings), HF's shifted cross-entropy. f32 throughout (TF32 off on CUDA), weights
~ normal(0, initializer_range), torch.optim.AdamW(lr=1e-4) — what src/nn + src/optim do.
One step = forward + loss + backward + AdamW step + zero_grad(set_to_none) and a sync (loss.item()). One
warm-up step, then the median of --steps steps, wall-clock. On CPU torch uses all cores unless --threads.

--stage 1: AlignX's stage-1 step (../shared/ALIGNX.md; bench/suites/train.ts trainOursStage1 is ours):
loss = L_NTP + λ_ctr · L_CTR + λ_lam · L_LAM, settings from the config's stage-1 fields or the reference's
defaults (align_layer L // 2, λ_ctr 0.3, τ 0.1, λ_lam 0.4, classifier width 128). The batch is the one
bench/suites/train.ts stage1Batch builds: every row's source span is [4, T//2) (index 1), its target span
[T//2 + 2, T - 2) (index 2), languages src = b % 3, tgt = (b + 1) % 3. The two losses are the reference's
(ictnlp/AlignX compute_contrastive_loss, compute_language_matching_loss, languageMatchingMLP) as
tools/goldens/alignx_losses.py restates them, copied here so the peer needs nothing but torch: the contrastive
loss on hidden_states[align_layer] (expanded [B, B, D] copies, nn.CosineSimilarity, LogSoftmax over dim 0),
the language-matching loss on the last hidden state shifted by one, with the classifier run on the
materialized [e_i ; e_j] inputs of all (2B)² pairs. The classifier (gate/up 2d → w, down w → 2, no biases) is
initialized as nn.Linear and trained with the model by the same AdamW.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
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


def forward_loss(cfg, P, ids, cos, sin, hidden=None):
    """The LM loss; with a list as `hidden`, HF's hidden_states go into it ([l] = input of layer l, [L] = the
    final norm's output)."""
    b, t = ids.shape
    x = F.embedding(ids, P["model.embed_tokens.weight"])
    act = act_fn(cfg.act)

    def lin(v, name):
        return F.linear(v, P[name + ".weight"], P.get(name + ".bias"))

    for l in range(cfg.layers):
        p = f"model.layers.{l}"
        if hidden is not None:
            hidden.append(x)
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
    if hidden is not None:
        hidden.append(x)
    logits = F.linear(x, P["model.embed_tokens.weight"] if cfg.tie else P["lm_head.weight"])
    labels = F.pad(ids[:, 1:], (0, 1), value=-100)
    return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


# ---- stage 1 (the reference's losses, as tools/goldens/alignx_losses.py restates them) ----------------------


def contrastive(hidden, src_tgt_index, temperature):
    # compute_contrastive_loss, as the reference writes it.
    src_mask = (src_tgt_index == 1)
    src_sent_lengths = src_mask.sum(dim=1).unsqueeze(-1)
    anchor_feature = (hidden * src_mask.unsqueeze(-1)).sum(dim=1) / src_sent_lengths
    tgt_mask = (src_tgt_index == 2)
    tgt_sent_lengths = tgt_mask.sum(dim=1).unsqueeze(-1)
    contrast_feature = (hidden * tgt_mask.unsqueeze(-1)).sum(dim=1) / tgt_sent_lengths
    npairs, feature_dim = anchor_feature.shape
    sim = nn.CosineSimilarity(dim=-1)
    anchor_dot_contrast = sim(anchor_feature.expand((npairs, npairs, feature_dim)),
                              torch.transpose(contrast_feature.expand((npairs, npairs, feature_dim)), 0, 1))
    loss = -nn.LogSoftmax(0)(torch.div(anchor_dot_contrast, temperature)).diag().sum()
    return loss / npairs / 2


def classifier(x, gate, up, down):
    # languageMatchingMLP (a LlamaMLP): down_proj(silu(gate_proj(x)) * up_proj(x)), no biases.
    return F.linear(F.silu(F.linear(x, gate)) * F.linear(x, up), down)


def language_matching(last, src_tgt_index, src_lang, tgt_lang, gate, up, down):
    # compute_language_matching_loss, as the reference writes it.
    hidden_states = last[..., :-1, :].contiguous()
    src_tgt_index = src_tgt_index[..., 1:].contiguous()
    src_mask = (src_tgt_index == 1)
    src_sent_lengths = src_mask.sum(dim=1).unsqueeze(-1)
    src_embeddings = (hidden_states * src_mask.unsqueeze(-1)).sum(dim=1) / src_sent_lengths
    tgt_mask = (src_tgt_index == 2)
    tgt_sent_lengths = tgt_mask.sum(dim=1).unsqueeze(-1)
    tgt_embeddings = (hidden_states * tgt_mask.unsqueeze(-1)).sum(dim=1) / tgt_sent_lengths
    embeddings = torch.cat((src_embeddings, tgt_embeddings), dim=0)
    lang = torch.cat((src_lang, tgt_lang), dim=0)
    bsz, feature_dim = embeddings.shape
    embeddings_i = embeddings.unsqueeze(1).repeat(1, bsz, 1)
    embeddings_j = embeddings.unsqueeze(0).repeat(bsz, 1, 1)
    concat_embeddings = torch.cat((embeddings_i, embeddings_j), dim=-1)
    logits = classifier(concat_embeddings, gate, up, down)
    lang_labels_i = lang.unsqueeze(1).repeat(1, bsz)
    lang_labels_j = lang.unsqueeze(0).repeat(bsz, 1)
    ground_truth = (lang_labels_i == lang_labels_j).long()
    return nn.CrossEntropyLoss()(logits.view(-1, 2), ground_truth.view(-1))


def stage1_settings(raw):
    # tools/parity_reference.py's stage1_settings: the config's fields, else the reference's defaults.
    get = lambda k, d: raw[k] if raw.get(k) is not None else d
    return {
        "align_layer": int(get("align_layer", raw["num_hidden_layers"] // 2)),
        "contrastive_lambda": float(get("contrastive_lambda", 0.3)),
        "contrastive_temperature": float(get("contrastive_temperature", 0.1)),
        "language_matching_lambda": float(get("language_matching_lambda", 0.4)),
        "language_matching_intermediate_size": int(get("language_matching_intermediate_size", 128)),
    }


def stage1_batch(b, t):
    """bench/suites/train.ts stage1Batch's spans and languages: src_tgt_index [B, T], src_lang, tgt_lang [B]."""
    half = t // 2
    assert t >= 12, f"--seq {t} is too short for a source and a target span (needs >= 12)"
    row = [1 if 4 <= i < half else 2 if half + 2 <= i < t - 2 else 0 for i in range(t)]
    idx = torch.tensor([row] * b, dtype=torch.int64)
    return idx, torch.tensor([i % 3 for i in range(b)]), torch.tensor([(i + 1) % 3 for i in range(b)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="HF config.json contents (JSON) or a path to one")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--stage", type=int, choices=[0, 1], default=0, help="1: AlignX's stage-1 step (see the module docstring)")
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
    C = {}
    if a.stage == 1:
        st = stage1_settings(raw)
        d, w = cfg.hidden, st["language_matching_intermediate_size"]
        for name, shape in (("gate", (w, 2 * d)), ("up", (w, 2 * d)), ("down", (2, w))):
            bound = 1 / math.sqrt(shape[1])  # nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            C[name] = ((torch.rand(shape, device=dev) * 2 - 1) * bound).requires_grad_(True)
        idx, src_lang, tgt_lang = (v.to(dev) for v in stage1_batch(a.batch, a.seq))
    opt = torch.optim.AdamW(list(P.values()) + list(C.values()), lr=1e-4)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, cfg.vocab, (a.batch, a.seq), generator=g).to(dev)
    terms = {}

    def step():
        # Rotary tables are part of HF's forward (LlamaRotaryEmbedding), so they are rebuilt every step.
        inv = rope_inv_freq(cfg, a.seq).to(dev)
        freqs = torch.outer(torch.arange(a.seq, device=dev, dtype=torch.float32), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        hidden = [] if a.stage == 1 else None
        loss = forward_loss(cfg, P, ids, emb.cos()[None, None], emb.sin()[None, None], hidden)
        if a.stage == 1:
            ntp = loss
            ctr = contrastive(hidden[st["align_layer"]], idx, st["contrastive_temperature"]) if a.batch > 1 else torch.zeros((), device=dev)
            lam = language_matching(hidden[-1], idx, src_lang, tgt_lang, C["gate"], C["up"], C["down"])
            # The reference's order: (lm_loss + λ_ctr · ctr) + λ_lam · lam
            loss = ntp + st["contrastive_lambda"] * ctr + st["language_matching_lambda"] * lam
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        value = loss.item()
        if a.stage == 1 and not terms:  # the warm-up step's terms (at init), read after its loss
            terms.update(ntp=ntp.item(), ctr=ctr.item(), lam=lam.item())
        return value

    loss_init = step()
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
                "params": sum(p.numel() for p in list(P.values()) + list(C.values())),
                "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
                **ran_with(),
                "loss": loss,
                "loss_init": loss_init,
                **({"terms_init": terms} if a.stage == 1 else {}),
            }
        )
    )


if __name__ == "__main__":
    main()
