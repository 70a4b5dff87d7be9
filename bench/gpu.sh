#!/usr/bin/env bash
# bench/gpu.sh — the device check for an NVIDIA GPU server with no network (also what the `device` tool runs).
#
# Needs, in the repo root: dist/alignx.xz (from `bun run build`, then `xz -T0 -k dist/alignx`; one binary holds
# the CLI and the bench, `alignx bench`, so it fits the device tool's 64 MiB carry limit with the loader .debs),
# and optionally .gl/*.deb (the Vulkan loader .debs, when the machine has none). Steps, each printed as it runs (the bench is capped at 7 minutes, the rest takes ~1):
#   1. unpack the loader and the binaries; 2. `alignx info` on the GPU adapter (fails if only a CPU adapter);
#   2b. correctness on the GPU's kernels: `alignx parity --expected` on the four committed PyTorch fixtures
#      (LLaMA, LLaMA-3, Mistral, Gemma: logits, loss and every gradient against tools/parity_reference.py);
#   3. the bench (`alignx bench`, full sizes: ceilings, every op family, training of ~124M and ~1B LLaMA
#      configs, next-token and AlignX stage 1 (train-stage1-*, with its overhead over the NTP step), peers; the PyTorch training peer bench/torch_train_peer.py runs from it when a python3 with CUDA
#      torch is found) with Dawn's experimental features on (subgroup matrices);
#   4. the PyTorch matmul counterparts on the same GPU (bench/torch_peer.py); 5. the ratio table.
# Run only part of the bench with BENCH_ARGS, e.g. BENCH_ARGS="--no-train" or BENCH_ARGS="--only attention".
# Rehearse it on a CPU box with GPU_SH_ALLOW_CPU=1 BENCH_ARGS=--quick (lavapipe stands in for the GPU).
# With the `device` tool (a session that drew a GPU): here, `bun run build && xz -T0 -k -f dist/alignx` and the
# loader .debs in .gl/ (the recipe in /work/.library/device/README.md); then one run with carry
# [".gl", "dist/alignx.xz"] and the command `bash bench/gpu.sh`, timeout_s 540 (the bench stops itself at 6
# minutes); everything comes back from $OUT (at most 8 files: info.json, bench.txt, latest.json, its dated
# copy, torch.json, cache/autotune-*.json).
# Results go to $OUT (if set) or bench/results/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-bench/results}"
mkdir -p "$out"
# The matmul autotune results (timed by `alignx info` below, reused by the bench) come back with the results.
export ALIGNX_CACHE_DIR="$out/cache"
say() { echo "gpu.sh: $*"; }

if ! ldconfig -p | grep -q 'libvulkan.so.1 ' && compgen -G ".gl/*.deb" >/dev/null; then
  say "no Vulkan loader here: unpacking the one in .gl/"
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
if ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1 &&
  [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  say "using VK_DRIVER_FILES=$VK_DRIVER_FILES"
fi
if [ -f dist/alignx.xz ] && [ ! -x dist/alignx ]; then xz -dkf dist/alignx.xz; fi
[ -x dist/alignx ] || { say "missing dist/alignx(.xz): build it first"; exit 1; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/gpu.sh: nvidia-smi: /'

say "1/4 adapter"
dist/alignx info --json > "$out/info.json"
dist/alignx info
if grep -q '"kind": "cpu"' "$out/info.json" && [ -z "${GPU_SH_ALLOW_CPU:-}" ]; then
  say "only a CPU adapter: the GPU's Vulkan driver is not visible"
  exit 1
fi

say "1b/4 parity with PyTorch on this GPU's kernels (test/fixtures/parity)"
parity_failed=""
for f in llama llama3 mistral gemma; do
  d="test/fixtures/parity/$f"
  dist/alignx parity --model "$d" --batch "$d/batch.json" --out "/tmp/parity-$f.safetensors" --expected "$d/expected.safetensors" || parity_failed="$parity_failed $f"
done

say "2/4 kernel suite"
# shellcheck disable=SC2086 # BENCH_ARGS is a list of options
# --deadline: past 6 minutes the bench skips what is left and still writes its JSON; timeout is the backstop.
ALIGNX_DAWN_TOGGLES=allow_unsafe_apis timeout 420 dist/alignx bench --out "$out" --deadline 360 ${BENCH_ARGS:-} | tee "$out/bench.txt"

say "3/4 PyTorch on the same GPU"
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  timeout 120 python3 bench/torch_peer.py --n 4096 > "$out/torch.json"
  cat "$out/torch.json"
else
  say "no CUDA PyTorch here: skipping the PyTorch peer"
fi

say "4/4 ratios"
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
ours = json.load(open(os.path.join(out, "latest.json")))
print(f"device: {ours['device']['description']}")
print(f"ceilings: copy {ours['ceilings']['copy_gbps']:.1f} GB/s, matmul {ours['ceilings']['matmul_gflops']:.1f} GFLOP/s")
for key, r in ours.get("autotune", {}).items():
    print(f"autotune {'/'.join(key.split('/')[:-1])}: {r['choice']} ({', '.join(f'{k} {v:.3f} ms' for k, v in r['ms'].items())})")
best = {}
for k in ours["kernels"]:
    if k.get("gflops") and k["name"].startswith("matmul"):
        best[k["dtype"]] = max(best.get(k["dtype"], 0), k["gflops"])
tp = os.path.join(out, "torch.json")
if os.path.exists(tp):
    t = json.load(open(tp))
    for m in t["matmul"]:
        o = best.get(m["dtype"])
        if o:
            print(f"{m['name']:28s} ours {o:10.1f}  torch {m['gflops']:10.1f} GFLOP/s  ratio {o / m['gflops']:.3f}")
        else:
            print(f"{m['name']:28s} torch {m['gflops']:10.1f} GFLOP/s  (no {m['dtype']} matmul of ours yet)")
for p in ours["peers"]:
    print(f"{p['name']:28s} ours {p['ours']:10.2f}  peer {p['peer']:10.2f} {p['unit']}  ratio {p['ratio']:.2f}")
for t in ours.get("train", []):
    over = f"  overhead {t['overhead_pct']:+.1f}% of the NTP step" if t.get("overhead_pct") is not None else ""
    print(f"{t.get('name', 'train-' + t['config']):28s} {t['tokens_per_s']:10.1f} tokens/s  MFU {100 * t['mfu']:5.1f}%  peak {t['peak_bytes'] / 2**30:6.2f} GiB"
          f" for {t['params'] / 1e6:.0f}M params ({t['peak_over_params']:.2f}x their bytes){over}")
for s in ours.get("skipped", []):
    print(f"skipped {s['what']}: {s['why']}")
PY
if [ -n "$parity_failed" ]; then say "PARITY FAILED on this GPU for:$parity_failed (see above)"; exit 1; fi
say "parity with PyTorch held on this GPU for every fixture"
