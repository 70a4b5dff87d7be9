"""PyTorch goldens for softmax and log_softmax over the last axis (src/tensor/ops/softmax.ts).

    /usr/bin/python3 tools/goldens/softmax.py     # writes test/fixtures/goldens/softmax.json

Cases: rows of 1, 7 and 300 elements (300 > the 256-wide workgroup), a rank-3 input, and large logits
(uniform in [-80, 80]) where an unshifted exp would lose everything. Computed in float64.
"""
import torch.nn.functional as F

from common import case, gen, rand, randn, with_grads, write

OPS = {"softmax": lambda x: F.softmax(x, dim=-1), "log_softmax": lambda x: F.log_softmax(x, dim=-1)}


def main():
    g = gen(1234)
    cases = []
    for op, fn in OPS.items():
        inputs = [
            ("rows of 1", randn(g, 5, 1)),
            ("rows of 7", randn(g, 3, 7, scale=2.0)),
            ("rows of 300", randn(g, 2, 300, scale=3.0)),
            ("rank 3", randn(g, 2, 3, 9)),
            ("logits in [-80, 80]", rand(g, 3, 37, lo=-80.0, hi=80.0)),
        ]
        for name, x in inputs:
            outs, ups, grads = with_grads(lambda x: fn(x), {"x": x}, g)
            cases.append(case(f"{op}: {name}", {"x": x}, outs, params={"op": op}, upstream=ups, grads=grads))
    write("softmax", cases)


if __name__ == "__main__":
    main()
