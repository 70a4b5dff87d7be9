"""Golden fixtures for RMSNorm (HF LlamaRMSNorm, Gemma's (1 + w) variant) and LayerNorm (torch).

    /usr/bin/python3 tools/goldens/norm.py      # writes test/fixtures/goldens/norm.json

Inputs are float32 values; the math runs in float64 (the modules below are HF's, with float32 replaced by the
input's dtype), so the fixture is a reference the f32 kernels are compared against with a tolerance.
"""
import torch
import torch.nn.functional as F

from common import case, gen, randn, with_grads, write


def f32(t):
    return t.float().double()


def llama_rmsnorm(x, weight, eps):
    # transformers.models.llama.modeling_llama.LlamaRMSNorm.forward, computing in x's dtype (float64 here)
    variance = x.pow(2).mean(-1, keepdim=True)
    hidden_states = x * torch.rsqrt(variance + eps)
    return weight * hidden_states


def gemma_rmsnorm(x, weight, eps):
    # transformers.models.gemma.modeling_gemma.GemmaRMSNorm: output * (1.0 + weight)
    output = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return output * (1.0 + weight)


def layernorm(x, weight, bias=None, eps=1e-5):
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def main():
    g = gen(20240603)
    cases = []
    kinds = ["rmsnorm", "rmsnorm_unit", "layernorm", "layernorm_nobias"]
    plan = [(s, k) for s in [(3, 7), (2, 2, 5), (5, 1), (37,)] for k in kinds]
    plan += [((2, 130), "rmsnorm"), ((2, 130), "layernorm")]  # rows longer than half a workgroup
    for shape, kind in plan:
        d = shape[-1]
        x = f32(randn(g, *shape, scale=1.5) + 0.3)
        w = f32(randn(g, d, scale=0.5) + (0.0 if kind == "rmsnorm_unit" else 1.0))
        inputs = {"x": x, "weight": w}
        if kind == "rmsnorm":
            eps = 1e-6
            fn = lambda x, weight: llama_rmsnorm(x, weight, eps)
        elif kind == "rmsnorm_unit":
            eps = 1e-6
            fn = lambda x, weight: gemma_rmsnorm(x, weight, eps)
        elif kind == "layernorm":
            eps = 1e-5
            inputs["bias"] = randn(g, d, scale=0.5)
            fn = lambda x, weight, bias: layernorm(x, weight, bias, eps)
        else:
            eps = 1e-5
            fn = lambda x, weight: layernorm(x, weight, None, eps)
        outs, ups, grads = with_grads(fn, inputs, g)
        cases.append(case(f"{kind} {list(shape)}", inputs, outs, {"op": kind, "eps": eps}, ups, grads))
    write("norm", cases)


if __name__ == "__main__":
    main()
