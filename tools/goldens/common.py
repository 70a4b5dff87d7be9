"""Shared helpers for the PyTorch golden generators (one script per op family, tools/goldens/<family>.py).

Run with Debian's interpreter and torch (apt-get install python3-torch):
    /usr/bin/python3 tools/goldens/<family>.py        # writes test/fixtures/goldens/<family>.json

A fixture holds, per case: named inputs (shape + float32 data), scalar parameters, named outputs, and the
gradients of sum(output * upstream) with respect to each input, where `upstream` is a random tensor also
stored in the case (so every gradient element is exercised with a distinct weight). Keep cases small: the
fixtures are committed.
"""
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "test", "fixtures", "goldens")


def gen(seed):
    g = torch.Generator().manual_seed(seed)
    return g


def randn(g, *shape, scale=1.0):
    return (torch.randn(tuple(shape), generator=g, dtype=torch.float64) * scale).float().double()


def rand(g, *shape, lo=0.0, hi=1.0):
    return (lo + (hi - lo) * torch.rand(tuple(shape), generator=g, dtype=torch.float64)).float().double()


def tensor_json(t):
    t = t.detach()
    if t.dtype in (torch.int32, torch.int64, torch.bool):
        return {"shape": list(t.shape), "dtype": "i32", "data": [int(x) for x in t.reshape(-1).tolist()]}
    return {"shape": list(t.shape), "dtype": "f32", "data": [float(x) for x in t.float().reshape(-1).tolist()]}


def case(name, inputs, outputs, params=None, upstream=None, grads=None):
    """inputs/outputs/upstream/grads: dicts of name -> tensor. Computation should be in float64."""
    return {
        "name": name,
        "params": params or {},
        "inputs": {k: tensor_json(v) for k, v in inputs.items()},
        "outputs": {k: tensor_json(v) for k, v in outputs.items()},
        "upstream": {k: tensor_json(v) for k, v in (upstream or {}).items()},
        "grads": {k: tensor_json(v) for k, v in (grads or {}).items()},
    }


def with_grads(fn, inputs, g, grad_inputs=None, **kw):
    """Run fn(**inputs, **kw) -> tensor or dict of tensors in float64; backprop sum(out * upstream).

    Returns (outputs, upstream, grads) dicts. grad_inputs: names of inputs to differentiate (default: all
    floating inputs)."""
    leaves = {}
    for k, v in inputs.items():
        if v.is_floating_point() and (grad_inputs is None or k in grad_inputs):
            leaves[k] = v.clone().requires_grad_(True)
        else:
            leaves[k] = v
    out = fn(**leaves, **kw)
    outs = out if isinstance(out, dict) else {"out": out}
    ups = {}
    total = 0
    for k, o in outs.items():
        if o.is_floating_point() and o.requires_grad:
            u = randn(g, *o.shape)
            ups[k] = u
            total = total + (o * u).sum()
    grads = {}
    if ups:
        total.backward()
        for k, v in leaves.items():
            if isinstance(v, torch.Tensor) and v.requires_grad:
                grads[k] = v.grad if v.grad is not None else torch.zeros_like(v)
    return {k: o.detach() for k, o in outs.items()}, ups, grads


def write(family, cases):
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, f"{family}.json")
    doc = {"family": family, "generator": f"tools/goldens/{family}.py", "torch": torch.__version__, "cases": cases}
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.relpath(path, ROOT)}: {len(cases)} cases, {os.path.getsize(path)} bytes", file=sys.stderr)
