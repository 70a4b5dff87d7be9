"""PyTorch goldens for the losses AlignX needs (src/tensor/ops/loss.ts).

    /usr/bin/python3 tools/goldens/loss.py     # writes test/fixtures/goldens/loss.json

  cross_entropy            F.cross_entropy(logits, target, ignore_index=...) (reduction="mean")
  masked_mean              (x * m[..., None]).sum(1) / m.sum(1), 0 where the mask row is empty
  l2_normalize             F.normalize(x, dim=-1) (eps 1e-12), with a zero row and a row of norm < eps
  cosine_similarity_matrix F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
Computed in float64. (All-ignored cross-entropy gives a NaN loss, which JSON cannot hold: tested in TS.)
"""
import torch
import torch.nn.functional as F

from common import case, gen, rand, randn, with_grads, write


def ce_case(g, name, logits, target, ignore_index=-100):
    target = torch.tensor(target, dtype=torch.int64)
    # Reported as [1], not []: common.randn() cannot draw a 0-d upstream gradient (torch.randn(*()) fails).
    fn = lambda logits, target: F.cross_entropy(logits, target, ignore_index=ignore_index).reshape(1)
    outs, ups, grads = with_grads(fn, {"logits": logits, "target": target}, g)
    return case(f"cross_entropy: {name}", {"logits": logits, "target": target}, outs,
                params={"op": "cross_entropy", "ignoreIndex": ignore_index}, upstream=ups, grads=grads)


def masked_mean(x, mask):
    cnt = mask.sum(1, keepdim=True)
    s = (x * mask[..., None]).sum(1)
    return torch.where(cnt > 0, s / cnt.clamp_min(1), torch.zeros_like(s))


def main():
    g = gen(4321)
    cases = [
        ce_case(g, "6 rows of 7, two ignored", randn(g, 6, 7, scale=2.0), [3, -100, 0, 6, -100, 2]),
        ce_case(g, "4 rows of 300, one ignored", randn(g, 4, 300, scale=3.0), [299, 17, -100, 0]),
        ce_case(g, "ignore_index 0", randn(g, 5, 5), [0, 4, 0, 1, 2], ignore_index=0),
        ce_case(g, "one class", randn(g, 3, 1), [0, 0, 0]),
        ce_case(g, "logits in [-80, 80]", rand(g, 4, 37, lo=-80.0, hi=80.0), [5, 36, 0, 20]),
    ]

    mask = torch.tensor([[1, 1, 0, 1, 1, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 1, 1, 1, 0, 0, 0, 0, 0]],
                        dtype=torch.float64)
    x = randn(g, 3, 9, 37)
    outs, ups, grads = with_grads(masked_mean, {"x": x, "mask": mask}, g, grad_inputs=["x"])
    cases.append(case("masked_mean: [3, 9, 37], an empty row", {"x": x, "mask": mask}, outs,
                      params={"op": "masked_mean"}, upstream=ups, grads=grads))

    x = randn(g, 5, 37)
    x[1] = 0.0  # zero row: y = 0, dx = g / eps
    x[3] = (torch.ones(37) * 1e-15).float().double()  # norm 6e-15 < eps
    for name, xx in [("rows of 7", randn(g, 4, 7)), ("zero and tiny rows", x)]:
        outs, ups, grads = with_grads(lambda x: F.normalize(x, dim=-1), {"x": xx}, g)
        cases.append(case(f"l2_normalize: {name}", {"x": xx}, outs, params={"op": "l2_normalize"}, upstream=ups, grads=grads))

    a = randn(g, 5, 37)
    a[2] = 0.0
    cos = lambda a, b: F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    for name, aa, bb in [("[5, 37] x [3, 37], a zero row", a, randn(g, 3, 37)), ("[2, 7] x [4, 7]", randn(g, 2, 7), randn(g, 4, 7))]:
        outs, ups, grads = with_grads(cos, {"a": aa, "b": bb}, g)
        cases.append(case(f"cosine_similarity_matrix: {name}", {"a": aa, "b": bb}, outs,
                          params={"op": "cosine_similarity_matrix"}, upstream=ups, grads=grads))
    write("loss", cases)


if __name__ == "__main__":
    main()
