"""PyTorch goldens for matmul (with transposed operands, batched, a 2-D operand shared by a batch) and
F.linear (src/tensor/ops/matmul.ts).

    /usr/bin/python3 tools/goldens/matmul.py      # writes test/fixtures/goldens/matmul.json

A case's params say the op and its flags: matmul(a, b, transA, transB) is torch.matmul(op(a), op(b)) with
op = transpose of the last two dimensions where the flag is set (the inputs are stored in that transposed
layout); linear(x, w, bias) is F.linear. Shapes are not multiples of 4 (scalar paths) or are (vec4 paths),
and one case has K = 300. Computed in float64.
"""
import torch
import torch.nn.functional as F

from common import case, gen, randn, with_grads, write


def stored(shape, trans):
    """The stored shape of an operand whose op() is `shape`."""
    return list(shape[:-2]) + [shape[-1], shape[-2]] if trans else list(shape)


def op(t, trans):
    return t.transpose(-1, -2) if trans else t


MATMUL = [
    # name, op(a) shape, op(b) shape
    ("2-D 7x5 . 5x6", [7, 5], [5, 6]),
    ("2-D 4x8 . 8x4 (vec4)", [4, 8], [8, 4]),
    ("2-D K=300", [2, 300], [300, 1]),
    ("batched [3] 3x5 . 5x2", [3, 3, 5], [3, 5, 2]),
    ("batched [2,2] 4x4 . 4x4", [2, 2, 4, 4], [2, 2, 4, 4]),
    ("shared b: [2,2] 3x5 . 5x2", [2, 2, 3, 5], [5, 2]),
    ("shared a: 3x5 . [3] 5x2", [3, 5], [3, 5, 2]),
]

LINEAR = [
    ("x [2,3,6], w [5,6], bias", [2, 3, 6], [5, 6], True),
    ("x [5,8], w [4,8], no bias (vec4)", [5, 8], [4, 8], False),
    ("x [5] (rank 1), w [3,5], bias", [5], [3, 5], True),
]


def main():
    g = gen(4321)
    cases = []
    for name, sa, sb in MATMUL:
        for ta in (False, True):
            for tb in (False, True):
                if name.startswith("2-D K=300") and (ta or tb):
                    continue  # keep the fixture small: NN only for the long K (the float64 tests cover all)
                inputs = {"a": randn(g, *stored(sa, ta)), "b": randn(g, *stored(sb, tb))}
                outs, ups, grads = with_grads(lambda a, b: torch.matmul(op(a, ta), op(b, tb)), inputs, g)
                cases.append(case(f"matmul {'T' if ta else 'N'}{'T' if tb else 'N'}: {name}", inputs, outs,
                                  params={"op": "matmul", "transA": ta, "transB": tb}, upstream=ups, grads=grads))
    for name, sx, sw, has_bias in LINEAR:
        inputs = {"x": randn(g, *sx), "w": randn(g, *sw, scale=0.5)}
        if has_bias:
            inputs["bias"] = randn(g, sw[0])
        fn = (lambda x, w, bias: F.linear(x, w, bias)) if has_bias else (lambda x, w: F.linear(x, w))
        outs, ups, grads = with_grads(fn, inputs, g)
        cases.append(case(f"linear: {name}", inputs, outs, params={"op": "linear"}, upstream=ups, grads=grads))
    write("matmul", cases)


if __name__ == "__main__":
    main()
