"""PyTorch goldens for the shape/index ops (src/tensor/ops/shape_ops.ts): forward outputs and the gradients of
sum(out * upstream) for slice, narrow, concat, stack, index_select, where, clamp, transpose, permute,
expand and contiguous, in float64 on float32-representable inputs.

    /usr/bin/python3 tools/goldens/shape_ops.py    # writes test/fixtures/goldens/shape_ops.json

Each case's params hold `op` and the op's arguments, spelled as the TypeScript call takes them.
"""
import torch

from common import case, gen, rand, randn, with_grads, write


def main():
    g = gen(20240531)
    cases = []

    def add(name, fn, inputs, params, grad_inputs=None):
        outs, ups, grads = with_grads(fn, inputs, g, grad_inputs=grad_inputs)
        cases.append(case(name, inputs, outs, params=params, upstream=ups, grads=grads))

    # slice: Python semantics x[:, 3:30:4] and a negative, clamped range x[-5:100] along axis 0
    add("slice step", lambda x: x[:, 3:30:4], {"x": randn(g, 5, 37)}, {"op": "slice", "axis": 1, "start": 3, "end": 30, "step": 4})
    add("slice negative", lambda x: x[-5:100], {"x": randn(g, 7, 3, 2)}, {"op": "slice", "axis": 0, "start": -5, "end": 100, "step": 1})
    add("narrow", lambda x: x.narrow(1, 2, 6), {"x": randn(g, 3, 11, 7)}, {"op": "narrow", "axis": 1, "start": 2, "length": 6})

    add("concat axis 1", lambda x0, x1, x2: torch.cat([x0, x1, x2], dim=1),
        {"x0": randn(g, 2, 3, 5), "x1": randn(g, 2, 7, 5), "x2": randn(g, 2, 1, 5)}, {"op": "concat", "axis": 1})
    add("concat 1-D", lambda x0, x1: torch.cat([x0, x1], dim=-1), {"x0": randn(g, 37), "x1": randn(g, 260)}, {"op": "concat", "axis": -1})
    add("stack axis 1", lambda x0, x1, x2: torch.stack([x0, x1, x2], dim=1),
        {"x0": randn(g, 4, 9), "x1": randn(g, 4, 9), "x2": randn(g, 4, 9)}, {"op": "stack", "axis": 1})
    add("stack last", lambda x0, x1: torch.stack([x0, x1], dim=-1), {"x0": randn(g, 3, 5), "x1": randn(g, 3, 5)}, {"op": "stack", "axis": -1})

    ids = torch.tensor([3, 3, 0, 9, 3, 5, 1], dtype=torch.int32)
    add("index_select rows, repeated ids", lambda x, ids: x.index_select(0, ids.long()),
        {"x": randn(g, 10, 6), "ids": ids}, {"op": "indexSelect", "axis": 0})
    ids = torch.tensor([4, 0, 4, 2], dtype=torch.int32)
    add("index_select middle axis", lambda x, ids: x.index_select(1, ids.long()),
        {"x": randn(g, 2, 5, 3), "ids": ids}, {"op": "indexSelect", "axis": 1})

    cond = (torch.rand(3, 1, 5, generator=g) < 0.5).double()
    add("where broadcast", lambda cond, a, b: torch.where(cond != 0, a, b),
        {"cond": cond, "a": randn(g, 4, 5), "b": randn(g, 3, 4, 1)}, {"op": "where"}, grad_inputs=["a", "b"])

    x = rand(g, 7, 13, lo=-1.0, hi=1.0)
    x.view(-1)[::9] = 0.5  # exactly on the upper bound
    x.view(-1)[4::11] = -0.5  # exactly on the lower bound
    add("clamp both", lambda x: x.clamp(-0.5, 0.5), {"x": x}, {"op": "clamp", "min": -0.5, "max": 0.5})
    add("clamp min", lambda x: x.clamp(min=0.5), {"x": x}, {"op": "clamp", "min": 0.5})
    add("clamp max", lambda x: x.clamp(max=-0.5), {"x": x}, {"op": "clamp", "max": -0.5})

    add("transpose inner", lambda x: x.transpose(1, 2).contiguous(), {"x": randn(g, 3, 4, 5)}, {"op": "transpose", "d0": 1, "d1": 2})
    add("transpose outer", lambda x: x.transpose(0, -1).contiguous(), {"x": randn(g, 3, 4, 5)}, {"op": "transpose", "d0": 0, "d1": -1})
    add("permute", lambda x: x.permute(2, 0, 3, 1).contiguous(), {"x": randn(g, 2, 3, 4, 5)}, {"op": "permute", "perm": [2, 0, 3, 1]})
    add("expand", lambda x: x.expand(2, 3, 4, 5).contiguous(), {"x": randn(g, 3, 1, 5)}, {"op": "expand", "shape": [2, -1, 4, 5]})
    add("contiguous", lambda x: x.clone(), {"x": randn(g, 3, 7)}, {"op": "contiguous"})

    write("shape_ops", cases)


if __name__ == "__main__":
    main()
