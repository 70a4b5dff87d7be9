"""Golden fixtures for rotary position embedding, HF LLaMA's math reproduced in torch, in float32.

    /usr/bin/python3 tools/goldens/rope.py      # writes test/fixtures/goldens/rope.json

Unlike the other families this one runs in float32, the way HF runs LLaMA: inv_freq, the angles, cos and sin
are HF's float32 values, so the fixture checks the kernel's bit-closeness to HF (inv_freq bit for bit, cos/sin
and the rotation to about one float32 ulp). Per case: x [B, H, T, Dh], int positions [B, T] (the test also
tries them as [T] where all rows agree), params theta; outputs out, and HF's inv_freq, cos, sin [B, T, Dh];
grads: d(sum(out * upstream))/dx by torch autograd in float32. A last case holds HF's inv_freq for common
(Dh, theta) pairs, keyed "Dh/theta".
"""
import torch

from common import case, gen, randn, with_grads, write


# transformers.models.llama.modeling_llama (LlamaRotaryEmbedding, default rope_type), as functions.
def hf_inv_freq(dim, base):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def hf_cos_sin(inv_freq, position_ids):
    inv_freq_expanded = inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
    position_ids_expanded = position_ids[:, None, :].float()
    freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, cos, sin, unsqueeze_dim=1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (rotate_half(q) * sin)


def main():
    g = gen(20240605)
    cases = []
    plan = [
        # B, H, T, Dh, theta, positions
        (2, 3, 5, 8, 10000.0, "arange"),
        (1, 2, 7, 6, 10000.0, "arange"),  # half = 3
        (2, 1, 3, 32, 500000.0, "offsets"),  # Llama 3's theta; per-batch positions (left padding / packing)
        (1, 1, 4, 128, 10000.0, "large"),  # positions up to 10^5: the sin/cos range reduction
        (1, 1, 40, 2, 10000.0, "large"),  # inv_freq = [1]: angles = positions
    ]
    for b, h, t, dh, theta, kind in plan:
        if kind == "arange":
            pos = torch.arange(t).expand(b, t)
        elif kind == "offsets":
            pos = torch.stack([torch.arange(t) + 3 * i for i in range(b)])
        else:
            pos = torch.randint(0, 100000, (b, t), generator=g)
        x = randn(g, b, h, t, dh).float()
        inv_freq = hf_inv_freq(dh, theta)
        cos, sin = hf_cos_sin(inv_freq, pos)

        def fn(x):
            return {"out": apply_rotary_pos_emb(x, cos, sin), "inv_freq": inv_freq, "cos": cos, "sin": sin}

        outs, ups, grads = with_grads(fn, {"x": x}, g)
        cases.append(case(f"rope B={b} H={h} T={t} Dh={dh} theta={theta:g} {kind}", {"x": x, "positions": pos}, outs, {"theta": theta}, ups, grads))
    # HF's inv_freq over the usual head sizes and thetas: torch's float32 pow is within 1 ulp of correctly
    # rounded, not always equal to it; the test checks ours against these within 1 ulp and counts equality.
    survey = {}
    for dh in [64, 80, 128, 256]:
        for theta in [10000.0, 500000.0, 1000000.0]:
            survey[f"{dh}/{theta:g}"] = hf_inv_freq(dh, theta)
    cases.append(case("inv_freq survey", {}, survey, {"survey": True}))
    write("rope", cases)


if __name__ == "__main__":
    main()
