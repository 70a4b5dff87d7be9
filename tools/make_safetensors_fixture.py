"""Write the safetensors fixtures of test/io from PyTorch tensors, byte for byte as the Python `safetensors`
library (`safetensors.torch.save_file`) lays them out, without needing that package:

    /usr/bin/python3 tools/make_safetensors_fixture.py      # Debian's python3-torch (torch 1.13 is enough)

Writes, under test/fixtures/io/:
  tiny.safetensors        one tensor of every common dtype (F32, F16, BF16, I32, I64, U8, BOOL, F64, I8, I16),
                          special values (±0, ±inf, NaN, subnormals, extremes), a 0-d and an empty tensor,
                          metadata {"format": "pt", ...}
  tiny.expected.json      per tensor: dtype, shape, the raw bytes (hex) and the values as torch reads them
                          (non-finite values as the strings "nan", "inf", "-inf"); plus torch's own
                          float32 -> bfloat16 / float16 conversions of edge and random values, as bit pairs
  tiny-llama/             a 2-layer LLaMA (hidden 8, GQA 2 heads / 1 kv head, vocab 32) in BF16, sharded in
                          two files with model.safetensors.index.json and config.json, as save_pretrained does

The layout rules copied from the Rust crate (safetensors/src/tensor.rs, `prepare` and `Metadata`):
tensors sorted by dtype (descending enum order, i.e. larger alignment first) then by name; data laid out in
that order without gaps; header = compact JSON with "__metadata__" first, then the tensors in the same order;
padded with spaces so that 8 + header length is a multiple of 8.
"""
import json
import math
import os
import struct

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "test", "fixtures", "io")

# The Rust crate's Dtype enum order (safetensors >= 0.5).
ORDER = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16", "F16", "BF16",
         "I32", "U32", "F32", "C64", "F64", "I64", "U64"]
DTYPE = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int32: "I32", torch.int64: "I64", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def raw_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)  # numpy has no bfloat16: same bits as int16
    return t.numpy().tobytes()


def save(path, tensors, metadata=None):
    items = sorted(tensors.items(), key=lambda kv: (-ORDER.index(DTYPE[kv[1].dtype]), kv[0].encode("utf-8")))
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blobs, pos = [], 0
    for name, t in items:
        b = raw_bytes(t)
        header[name] = {"dtype": DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [pos, pos + len(b)]}
        blobs.append(b)
        pos += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def jsonable(x):
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
    return x


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def conversions(g):
    """torch's float32 -> bfloat16 and -> float16 on edge and random values, as [f32 bits, 16-bit bits]."""
    vals = [0.0, -0.0, 1.0, -1.0, 1 / 3, 0.1, 65504.0, 65519.99, 65520.0, 65536.0, 1e5, -1e5, 2.0 ** -14, 2.0 ** -24,
            2.0 ** -25, 2.0 ** -25 * 1.0000001, 3 * 2.0 ** -26, 5.96e-8, 6.1e-5, 6.1035e-5, 1e-8, 1e-45, 1.17549435e-38,
            3.4028235e38, -3.4028235e38, 3.3895314e38, 3.3961775e38, float("inf"), float("-inf"), float("nan")]
    # bfloat16 ties: exact halfway between two bf16 values, with even and odd low bits
    for m in (0x3f808000, 0x3f818000, 0x3f80c000, 0x3f817fff, 0x3f818001, 0x7f7f8000, 0x00008000, 0x80018000):
        vals.append(struct.unpack("<f", struct.pack("<I", m))[0])
    # float16 ties: 1 + k/2048 sits halfway between two f16 values (k odd)
    for k in (1, 3, 5, 2047):
        vals.append(1 + k / 2048)
    for scale in (1e-7, 1e-5, 1e-3, 1.0, 1e3, 6e4, 1e30):
        vals += (torch.randn(40, generator=g, dtype=torch.float64) * scale).tolist()
    x = torch.tensor(vals, dtype=torch.float32)
    bf = x.to(torch.bfloat16).view(torch.int16).to(torch.int32) & 0xFFFF
    hf = x.to(torch.float16).view(torch.int16).to(torch.int32) & 0xFFFF
    bits = [f32_bits(v) for v in x.tolist()]
    return {"f32_to_bf16": [[b, int(c)] for b, c in zip(bits, bf.tolist())],
            "f32_to_f16": [[b, int(c)] for b, c in zip(bits, hf.tolist())]}


def tiny():
    g = torch.Generator().manual_seed(20240611)
    inf, nan = float("inf"), float("nan")
    t = {
        "f32.matrix": torch.randn(3, 5, generator=g),
        "f32.special": torch.tensor([0.0, -0.0, inf, -inf, nan, 1e-45, 3.4028235e38, -1.5], dtype=torch.float32),
        "f16.values": (torch.randn(2, 3, 4, generator=g) * 10).half(),
        "f16.special": torch.tensor([0.0, -0.0, inf, -inf, nan, 2.0 ** -24, 2.0 ** -14, 65504.0, -65504.0, 1 / 3, 1e-6, 0.1],
                                    dtype=torch.float16),
        "bf16.values": torch.randn(4, 4, generator=g).bfloat16(),
        "bf16.special": torch.tensor([0.0, -0.0, inf, -inf, nan, 1e-39, 3.3895314e38, 1 / 3], dtype=torch.bfloat16),
        "i32.ids": torch.tensor([0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 42], dtype=torch.int32),
        "i64.ids": torch.tensor([[0, 1, -1], [2 ** 31 - 1, -(2 ** 31), 128255]], dtype=torch.int64),
        "i64.big": torch.tensor([2 ** 40, -1], dtype=torch.int64),
        "u8.bytes": torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8),
        "bool.mask": torch.tensor([[True, False], [False, True]]),
        "f64.values": torch.tensor([math.pi, -1e300, 5e-324], dtype=torch.float64),
        "i8.values": torch.tensor([-128, -1, 0, 127], dtype=torch.int8),
        "i16.values": torch.tensor([-32768, 0, 32767], dtype=torch.int16),
        "f32.scalar": torch.tensor(2.5, dtype=torch.float32),
        "f32.empty": torch.zeros(0, 4, dtype=torch.float32),
    }
    metadata = {"format": "pt", "source": "tools/make_safetensors_fixture.py"}
    save(os.path.join(OUT, "tiny.safetensors"), t, metadata)
    expected = {"metadata": metadata, "tensors": {}, "conversions": conversions(g)}
    for name, x in t.items():
        vals = x.reshape(-1).tolist() if x.dtype != torch.bool else [int(v) for v in x.reshape(-1).tolist()]
        if x.is_floating_point():
            vals = [jsonable(float(v)) for v in x.double().reshape(-1).tolist()]
        expected["tensors"][name] = {"dtype": DTYPE[x.dtype], "shape": list(x.shape), "hex": raw_bytes(x).hex(), "values": vals}
    with open(os.path.join(OUT, "tiny.expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


def tiny_llama():
    g = torch.Generator().manual_seed(7)
    cfg = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 8, "initializer_range": 0.02, "intermediate_size": 16,
        "max_position_embeddings": 64, "mlp_bias": False, "model_type": "llama", "num_attention_heads": 2,
        "num_hidden_layers": 2, "num_key_value_heads": 1, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": None, "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.44.0", "use_cache": True, "vocab_size": 32,
    }
    h, inter, v, hd = 8, 16, 32, 4
    params = {"model.embed_tokens.weight": (v, h)}
    for i in range(2):
        p = f"model.layers.{i}"
        params.update({
            f"{p}.self_attn.q_proj.weight": (2 * hd, h), f"{p}.self_attn.k_proj.weight": (hd, h),
            f"{p}.self_attn.v_proj.weight": (hd, h), f"{p}.self_attn.o_proj.weight": (h, 2 * hd),
            f"{p}.mlp.gate_proj.weight": (inter, h), f"{p}.mlp.up_proj.weight": (inter, h),
            f"{p}.mlp.down_proj.weight": (h, inter),
            f"{p}.input_layernorm.weight": (h,), f"{p}.post_attention_layernorm.weight": (h,),
        })
    params["model.norm.weight"] = (h,)
    params["lm_head.weight"] = (v, h)
    tensors = {}
    for name, shape in params.items():
        if name.endswith("norm.weight"):
            tensors[name] = (1 + torch.arange(h, dtype=torch.float32) / 8).bfloat16()  # exact in bf16
        else:
            tensors[name] = (torch.randn(*shape, generator=g) * 0.02).bfloat16()
    d = os.path.join(OUT, "tiny-llama")
    os.makedirs(d, exist_ok=True)
    shard1 = [n for n in params if n.startswith("model.embed_tokens") or n.startswith("model.layers.0.")]
    shard2 = [n for n in params if n not in shard1]
    files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map, total = {}, 0
    for fname, names in zip(files, (shard1, shard2)):
        save(os.path.join(d, fname), {n: tensors[n] for n in names}, {"format": "pt"})
        for n in names:
            weight_map[n] = fname
            total += tensors[n].numel() * 2
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2, sort_keys=True) + "\n")
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    tiny()
    tiny_llama()
    print(f"wrote {OUT}/tiny.safetensors, tiny.expected.json, tiny-llama/")
