"""PyTorch goldens for the optimizers (src/optim): AdamW, SGD, clip_grad_norm_.

Run: /usr/bin/python3 tools/goldens/optim.py   -> test/fixtures/goldens/optim.json

Optimizer cases run several steps of torch.optim.AdamW / torch.optim.SGD (float64, on float32-rounded
inputs) over three small parameters of odd sizes with given gradients. Fixture layout per case:
  inputs   p{i}              the initial parameter i
           g{s}_{i}          the gradient of parameter i at step s (1-based); ABSENT means grad None at that
                             step, which torch skips (no decay, no state update, no step count)
  outputs  p{i}_s{s}         parameter i after step s
           exp_avg{i}, exp_avg_sq{i}   AdamW state after the last step (absent if never stepped)
           momentum_buffer{i}          SGD state after the last step (absent if never created)
  params   kind ("adamw" | "sgd"), steps, the optimizer's hyperparameters as given, and resolved: the
           optimizer's resolved hyperparameters (torch's defaults for those not given)
Clip cases: inputs g{i} (three gradients of odd sizes), params max_norm; outputs total_norm and the clipped
gradients c{i}.
"""
import torch

from common import case, gen, randn, write

SHAPES = [[7], [5, 3], [37]]
# Hyperparameters whose torch defaults the test compares with ours (the rest: given explicitly or unsupported).
RESOLVED_KEYS = ("betas", "eps", "weight_decay", "momentum", "dampening", "nesterov")


def run_optimizer(name, seed, kind, steps, skip, **hp):
    """skip: set of (step, index) pairs whose gradient is None."""
    g = gen(seed)
    params = [randn(g, *s).requires_grad_(True) for s in SHAPES]
    inputs = {f"p{i}": p.detach().clone() for i, p in enumerate(params)}
    if kind == "adamw":
        opt = torch.optim.AdamW(params, **hp)
    else:
        opt = torch.optim.SGD(params, **hp)
    outputs = {}
    for s in range(1, steps + 1):
        for i, p in enumerate(params):
            if (s, i) in skip:
                p.grad = None
            else:
                grad = randn(g, *SHAPES[i])
                inputs[f"g{s}_{i}"] = grad
                p.grad = grad.clone()
        opt.step()
        for i, p in enumerate(params):
            outputs[f"p{i}_s{s}"] = p.detach().clone()
    for i, p in enumerate(params):
        st = opt.state.get(p, {})
        for k in ("exp_avg", "exp_avg_sq", "momentum_buffer"):
            if st.get(k) is not None:
                outputs[f"{k}{i}"] = st[k]
    hp_json = {k: (list(v) if isinstance(v, tuple) else v) for k, v in hp.items()}
    resolved = {k: (list(v) if isinstance(v, tuple) else v) for k, v in opt.defaults.items() if k in RESOLVED_KEYS}
    return case(name, inputs, outputs, params={"kind": kind, "steps": steps, **hp_json, "resolved": resolved})


def run_clip(name, seed, max_norm, scale):
    g = gen(seed)
    grads = [randn(g, *s, scale=scale) for s in SHAPES]
    params = [torch.zeros(*s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for p, gr in zip(params, grads):
        p.grad = gr.clone()
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    outputs = {"total_norm": total.reshape([])}
    outputs.update({f"c{i}": p.grad for i, p in enumerate(params)})
    return case(name, {f"g{i}": gr for i, gr in enumerate(grads)}, outputs, params={"max_norm": max_norm})


def main():
    torch.set_default_dtype(torch.float64)
    # Parameter 2 has no gradient at step 1 (its state starts at step 2, with its own step count 1);
    # parameter 1 has none at step 3 (skipped: no weight decay, no moment update).
    skip = {(1, 2), (3, 1)}
    cases = [
        run_optimizer("adamw_wd", 11, "adamw", 5, skip, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
        # lr raised from the default 1e-3 so that the default weight decay (lr * 0.01 per step) shows at 1e-4.
        run_optimizer("adamw_defaults", 12, "adamw", 3, set(), lr=0.05),
        run_optimizer("adamw_betas_eps", 13, "adamw", 4, set(), lr=3e-3, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.0),
        run_optimizer("sgd_plain", 21, "sgd", 3, skip, lr=0.1),
        run_optimizer("sgd_momentum_wd_dampening", 22, "sgd", 4, skip, lr=0.05, momentum=0.9, dampening=0.25, weight_decay=0.05),
        run_optimizer("sgd_nesterov", 23, "sgd", 4, skip, lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
        run_clip("clip_active", 31, 1.0, 1.0),  # norm ~ 12: scaled down
        run_clip("clip_inactive", 32, 100.0, 1.0),  # norm < max_norm: scale 1
    ]
    write("optim", cases)


if __name__ == "__main__":
    main()
