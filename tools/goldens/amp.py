"""PyTorch goldens for mixed precision (src/tensor/ops/cast.ts, the f16 paths of src/tensor/ops/matmul.ts).

    /usr/bin/python3 tools/goldens/amp.py      # writes test/fixtures/goldens/amp.json

Cases:
  cast     torch's `.half()` of f32 values over the whole half range (normals, subnormals, exact ties,
           65519 / 65520 at the overflow edge, values beyond it), as bit patterns (`bits`, int16 as stored;
           JSON has no inf). An odd element count.
  linear   F.linear on f16 inputs as torch.autocast computes it on a GPU: operands rounded to f16, products
           accumulated in wide precision (float64 here), the result rounded once to f16; gradients of
           sum(out * upstream) for an f16 upstream, likewise rounded once to f16. (torch 1.13 has no CPU f16
           matmul, so the wide accumulation is float64 — the float32 accumulation the kernels use differs from
           it by far less than one f16 ulp at these sizes.)
  matmul   the same for a batched matmul with a 2-D operand shared by the batch (its gradient sums the
           batch in wide precision, rounded once).
Values are stored as float32 (every f16 value is exactly an f32).
"""
import torch
import torch.nn.functional as F

from common import case, gen, randn, write


def half64(t):
    """t rounded to f16, as float64 (the inputs the f16 kernels see)."""
    return t.half().double()


def wide_then_half(fn, inputs, g):
    """fn on f16-rounded float64 leaves; out and grads of sum(out * upstream) rounded once to f16."""
    leaves = {k: half64(v).requires_grad_(True) for k, v in inputs.items()}
    out = fn(**leaves)
    up = half64(randn(g, *out.shape))
    (out * up).sum().backward()
    return ({k: v.detach() for k, v in leaves.items()}, {"out": half64(out.detach())}, {"out": up},
            {k: half64(v.grad) for k, v in leaves.items()})


def main():
    g = gen(2024)
    cases = []

    # cast: 3 * 40 random values over the half range, plus edges; odd count.
    scales = [1.0, 1e-3, 3e-6, 2e-7, 300.0, 2e4]
    vals = [randn(g, 20, scale=s) for s in scales]
    edge = torch.tensor([0.0, -0.0, 65504.0, 65519.0, 65520.0, -65520.0, 7e4, 1e-8, 2.9802322387695312e-08,
                         2.98023259e-08, 6.1035156e-05, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, -(2.0 + 2.0 ** -10),
                         0.1, 1.0 / 3.0, 2049.0], dtype=torch.float64)
    x = torch.cat(vals + [edge]).float()
    assert x.numel() % 2 == 1
    h = x.half()
    cases.append(case("cast f32 -> f16 -> f32", {"x": x.double()},
                      {"bits": h.view(torch.int16).int()}, params={"op": "cast"}))

    # linear: x [3, 5, 7], w [6, 7], bias [6].
    ins = {"x": randn(g, 3, 5, 7), "w": randn(g, 6, 7, scale=0.5), "bias": randn(g, 6)}
    leaves, outs, ups, grads = wide_then_half(lambda x, w, bias: F.linear(x, w, bias), ins, g)
    cases.append(case("linear f16: x [3,5,7], w [6,7], bias", leaves, outs, params={"op": "linear"}, upstream=ups, grads=grads))

    # matmul: a [2, 3, 5] (transposed storage [2, 5, 3]) . b [5, 6] shared by the batch.
    ins = {"a": randn(g, 2, 5, 3), "b": randn(g, 5, 6)}
    leaves, outs, ups, grads = wide_then_half(lambda a, b: torch.matmul(a.transpose(-1, -2), b), ins, g)
    cases.append(case("matmul f16 TN: a [2,5,3] (transposed) . b [5,6] shared", leaves, outs,
                      params={"op": "matmul", "transA": True, "transB": False}, upstream=ups, grads=grads))
    write("amp", cases)


if __name__ == "__main__":
    main()
