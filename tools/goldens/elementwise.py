"""PyTorch goldens for the elementwise and reduction ops (src/tensor/ops/{binary,unary,reduce}.ts).

    /usr/bin/python3 tools/goldens/elementwise.py     # writes test/fixtures/goldens/elementwise.json

Binary ops on same shapes and NumPy broadcasts (gradients summed over the broadcast dimensions); every unary
op (GELU both exact-erf and tanh forms, pow with integer, fractional and negative exponents); sum, mean and
max (torch.amax: ties share the gradient) over each axis, with keepdim, and in total, including a case
with ties. Computed in float64 on float32-representable inputs.
"""
import torch
import torch.nn.functional as F

from common import case, gen, rand, randn, with_grads, write

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}

UNARY = {
    "neg": (lambda x: -x, "any"),
    "exp": (torch.exp, "any"),
    "log": (torch.log, "pos"),
    "sqrt": (torch.sqrt, "pos"),
    "rsqrt": (torch.rsqrt, "pos"),
    "tanh": (torch.tanh, "any"),
    "sigmoid": (torch.sigmoid, "any"),
    "silu": (F.silu, "any"),
    "gelu": (lambda x: F.gelu(x), "any"),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), "any"),
}


def away_from_zero(g, *shape):
    x = rand(g, *shape, lo=0.5, hi=2.0)
    sign = torch.where(rand(g, *shape) < 0.5, -1.0, 1.0).double()
    return x * sign


def main():
    g = gen(20261126)
    cases = []
    for op, fn in BINARY.items():
        for sa, sb in [((3, 5), (3, 5)), ((3, 1), (1, 5)), ((2, 3, 4), (4,)), ((), (7,)), ((4, 1, 3), (2, 1))]:
            a = randn(g, *sa)
            b = away_from_zero(g, *sb) if op == "div" else randn(g, *sb)
            outs, ups, grads = with_grads(lambda a, b: fn(a, b), {"a": a, "b": b}, g)
            cases.append(case(f"{op} {list(sa)} x {list(sb)}", {"a": a, "b": b}, outs, params={"kind": "binary", "op": op}, upstream=ups, grads=grads))
    for op, (fn, domain) in UNARY.items():
        x = rand(g, 37, lo=0.1, hi=4.0) if domain == "pos" else randn(g, 37, scale=2.0)
        outs, ups, grads = with_grads(lambda x: fn(x), {"x": x}, g)
        cases.append(case(f"{op} [37]", {"x": x}, outs, params={"kind": "unary", "op": op}, upstream=ups, grads=grads))
    for e in [2.0, 3.0, 0.5, -1.5]:
        x = rand(g, 29, lo=0.2, hi=3.0) if e != int(e) else randn(g, 29)
        outs, ups, grads = with_grads(lambda x: torch.pow(x, e), {"x": x}, g)
        cases.append(case(f"pow {e} [29]", {"x": x}, outs, params={"kind": "pow", "e": e}, upstream=ups, grads=grads))
    reductions = {
        "sum": lambda x, dim, keep: x.sum() if dim is None else x.sum(dim=dim, keepdim=keep),
        "mean": lambda x, dim, keep: x.mean() if dim is None else x.mean(dim=dim, keepdim=keep),
        "max": lambda x, dim, keep: torch.amax(x) if dim is None else torch.amax(x, dim=dim, keepdim=keep),
    }
    for op, fn in reductions.items():
        for shape, dim, keep in [((2, 270), 1, False), ((3, 90), 0, True), ((3, 4, 6), 1, False), ((3, 4, 6), -1, True), ((7, 9), None, False)]:
            x = randn(g, *shape)
            outs, ups, grads = with_grads(lambda x: fn(x, dim, keep), {"x": x}, g)
            cases.append(case(f"{op} {list(shape)} dim={dim} keepdim={keep}", {"x": x}, outs, params={"kind": "reduce", "op": op, "dim": dim, "keepdim": keep}, upstream=ups, grads=grads))
    # Ties: small integers, so several elements share each row's max.
    x = torch.randint(0, 3, (4, 6), generator=g).double()
    for dim in [1, None]:
        outs, ups, grads = with_grads(lambda x: torch.amax(x) if dim is None else torch.amax(x, dim=dim), {"x": x}, g)
        cases.append(case(f"max with ties dim={dim}", {"x": x}, outs, params={"kind": "reduce", "op": "max", "dim": dim, "keepdim": False}, upstream=ups, grads=grads))
    write("elementwise", cases)


if __name__ == "__main__":
    main()
