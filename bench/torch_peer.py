"""PyTorch peer for bench/gpu.sh (and, on a CPU box with python3-torch, for the CPU comparison).

Prints one JSON object: {"device": ..., "torch": version, "blas", "blas_lib", "blas_path", "threads",
"matmul": [{"name","n","dtype","gflops","ms"}]} (what torch ran with: bench/torch_env.py).
Usage: python3 bench/torch_peer.py [--n 4096] [--reps 10] [--threads N]
On CUDA: fp32 with TF32 disabled (a true fp32 peer) and bf16; on CPU: fp32 only, on all cores unless --threads.
Timed: the median of --reps products after 3 warm-ups (CUDA events on a GPU, wall clock on the CPU).
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_env import ran_with, set_threads  # noqa: E402


def bench_matmul(n, dtype, device, reps):
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(reps):
            start.record()
            a @ b
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
    else:
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            a @ b
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    ms = times[len(times) // 2]
    return 2 * n**3 / (ms / 1e3) / 1e9, ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    n = args.n or (4096 if cuda else 1024)
    if not cuda:
        set_threads(args.threads)
    out = {"device": torch.cuda.get_device_name() if cuda else "cpu", **ran_with(), "matmul": []}
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    dtypes = [("f32", torch.float32)] + ([("bf16", torch.bfloat16), ("f16", torch.float16)] if cuda else [])
    for name, dt in dtypes:
        gflops, ms = bench_matmul(n, dt, device, args.reps)
        out["matmul"].append({"name": f"torch-matmul-{name}-{n}", "n": n, "dtype": name, "gflops": gflops, "ms": ms})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
