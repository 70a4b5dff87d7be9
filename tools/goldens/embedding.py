"""Golden fixtures for the embedding lookup (torch.nn.functional.embedding) and its table gradient.

    /usr/bin/python3 tools/goldens/embedding.py      # writes test/fixtures/goldens/embedding.json

ids repeat (several positions name one row; some rows are never named), so the gradient checks the
scatter-add. The table is float32 values, the math float64.
"""
import torch
import torch.nn.functional as F

from common import case, gen, randn, with_grads, write


def main():
    g = gen(20240604)
    cases = []
    for v, d, ids_shape in [(11, 5, (2, 7)), (30, 9, (40,)), (3, 1, (9,)), (5, 70, (3,)), (6, 4, ())]:
        table = randn(g, v, d)
        n = 1
        for s in ids_shape:
            n *= s
        # Half the positions draw from a few hot rows, so repeats are certain.
        hot = torch.randint(0, v, (n,), generator=g)
        ids = torch.where(torch.rand(n, generator=g) < 0.5, hot % 3, hot).reshape(ids_shape)
        outs, ups, grads = with_grads(lambda table, ids: F.embedding(ids, table), {"table": table, "ids": ids}, g)
        cases.append(case(f"embedding V={v} D={d} ids {list(ids_shape)}", {"table": table, "ids": ids}, outs, {}, ups, grads))
    write("embedding", cases)


if __name__ == "__main__":
    main()
