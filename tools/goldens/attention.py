"""PyTorch goldens for fused attention (src/tensor/ops/attention.ts): test/fixtures/goldens/attention.json.

torch 1.13 has no scaled_dot_product_attention, so the reference is the explicit float64 math SDPA does:
kv heads repeated Hq / Hkv times (repeat_interleave: query head h reads kv head h // group), boolean mask =
causal (j <= i) AND key padding (mask[b, j] != 0), masked scores filled with the most negative float64,
softmax, @ v. A query row with no visible key is set to 0 (torch's SDPA gives NaN there; the op gives 0);
filling with a finite minimum instead of -inf keeps that row's softmax finite, so its zero upstream
gradient stays zero and no NaN reaches dq/dk/dv. The tests compare outputs only on rows with a key.

Run: /usr/bin/python3 tools/goldens/attention.py
"""
import math

import torch

from common import case, gen, randn, with_grads, write


def attention(q, k, v, mask=None, causal=True, scale=None):
    B, Hq, T, Dh = q.shape
    group = Hq // k.shape[1]
    scale = 1.0 / math.sqrt(Dh) if scale is None else scale
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scores = (q @ k.transpose(-1, -2)) * scale
    visible = torch.ones(B, 1, T, T, dtype=torch.bool)
    if causal:
        visible = visible & torch.ones(T, T, dtype=torch.bool).tril()
    if mask is not None:
        visible = visible & (mask != 0)[:, None, None, :]
    scores = scores.masked_fill(~visible, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1) * visible.any(dim=-1, keepdim=True)
    return probs @ v


def padding(B, T, pads, side):
    m = torch.ones(B, T, dtype=torch.float64)
    for b, n in enumerate(pads):
        if n:
            if side == "left":
                m[b, :n] = 0
            else:
                m[b, T - n :] = 0
    return m


CASES = [
    # name, B, Hq, Hkv, T, Dh, causal, (side, pads) or None, scale
    ("mha_noncausal", 1, 2, 2, 5, 8, False, None, None),
    ("gqa_causal", 1, 4, 2, 6, 8, True, None, None),
    ("mqa_causal_leftpad", 2, 4, 1, 5, 8, True, ("left", [0, 2]), None),
    ("gqa_noncausal_rightpad", 2, 2, 1, 5, 8, False, ("right", [1, 3]), None),
    ("mha_causal_rightpad_scale", 1, 2, 2, 7, 16, True, ("right", [2]), 0.3),
]


def main():
    g = gen(1234)
    cases = []
    for name, B, Hq, Hkv, T, Dh, causal, pad, scale in CASES:
        inputs = {"q": randn(g, B, Hq, T, Dh), "k": randn(g, B, Hkv, T, Dh), "v": randn(g, B, Hkv, T, Dh)}
        if pad:
            inputs["mask"] = padding(B, T, pad[1], pad[0])
        outs, ups, grads = with_grads(
            lambda q, k, v, mask=None: attention(q, k, v, mask, causal, scale), inputs, g, grad_inputs=["q", "k", "v"]
        )
        params = {"causal": causal}
        if scale is not None:
            params["scale"] = scale
        cases.append(case(name, inputs, outs, params, ups, grads))
    write("attention", cases)


if __name__ == "__main__":
    main()
