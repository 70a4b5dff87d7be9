// Dtype casts between f32 and IEEE half (src/tensor/ops/cast.ts), bit-exact with PyTorch's `.half()` / `.float()`
// on every device: the conversions are integer code on the bits, so they depend neither on the device's
// rounding mode nor on whether it flushes subnormals (WGSL leaves both to the implementation).
//
//   f32_to_f16   dst (n halves, packed two per u32, element i in the low half of word i / 2 when i is even)
//                   = src (n f32). Round to nearest, ties to even, into and out of the subnormal range;
//                   |x| >= 65520 gives ±inf; NaN gives the quiet NaN 0x7e00 with x's sign (as torch's CPU
//                   conversion, c10::detail::fp16_ieee_from_fp32_value). One invocation per output word
//                   (elements 2w and 2w + 1); for odd n the last word's high half is written as +0, so the
//                   storage must round its size up to 4 bytes (the pool's buffers always do).
//   f16_to_f32   dst (n f32) = src (n halves, packed as above). Exact, subnormals included; NaN keeps its
//                   sign and payload. One invocation per element. With the define Y_ADD = `y32[i] + v` the value
//                   is added into dst's contents instead (autograd accumulating an f16 gradient into the f32
//                   gradient its input already has: src/tensor/ops/cast.ts).
//   accumulate_f16  y16 += x16 for two packed half tensors (autograd summing f16 gradients): each half widened
//                   exactly, added in f32, rounded back as f32_to_f16 does (so an overflow is a true inf,
//                   which the GradScaler's check sees). One invocation per word.
//
// Both stream over contiguous memory (consecutive invocations on consecutive words), on the 2-D grid of
// src/gpu/grid.ts (`row` invocations per grid row), 256 per workgroup. `n` is the element count; `words`
// the number of invocations (ceil(n / 2) for f32_to_f16, n for f16_to_f32). Limits: n < 2^32.
// Halves travel as u32 words, so this file never uses the WGSL half type: casts need no device feature.

struct Params {
  n: u32,
  words: u32,
  row: u32,
}

@group(0) @binding(0) var<storage, read> x32: array<f32>;
@group(0) @binding(1) var<storage, read_write> y16: array<u32>;
@group(0) @binding(2) var<storage, read> x16: array<u32>;
@group(0) @binding(3) var<storage, read_write> y32: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

// f32 bits → half bits (in the low 16 bits), round to nearest even.
fn f16_bits(b: u32) -> u32 {
  let sign = (b >> 16u) & 0x8000u;
  let exp = (b >> 23u) & 0xffu;
  let mant = b & 0x7fffffu;
  if (exp == 0xffu) {
    return sign | select(0x7e00u, 0x7c00u, mant == 0u); // inf, or the quiet NaN
  }
  let e = i32(exp) - 112; // rebias 127 → 15
  if (e >= 31) {
    return sign | 0x7c00u; // too large even before rounding
  }
  if (e <= 0) {
    // Subnormal (or zero) result: the 24-bit significand shifted right by 14 - e (14..24) units of 2^-24.
    if (e < -10) {
      return sign; // below half the smallest subnormal (f32 subnormals included): ±0
    }
    let m24 = mant | 0x800000u;
    let shift = u32(14 - e);
    let h = m24 >> shift;
    let rem = m24 & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    // A carry out of the subnormal range gives 0x400, the smallest normal, correctly encoded.
    return sign | (h + select(0u, 1u, rem > half || (rem == half && (h & 1u) == 1u)));
  }
  let h = (u32(e) << 10u) | (mant >> 13u);
  let rem = mant & 0x1fffu;
  // A carry into the exponent is right, up to inf (0x7c00).
  return sign | (h + select(0u, 1u, rem > 0x1000u || (rem == 0x1000u && (h & 1u) == 1u)));
}

// Half bits (low 16 bits of h) → the f32 value, exactly.
fn f16_value(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let exp = (h >> 10u) & 0x1fu;
  let mant = h & 0x3ffu;
  if (exp == 0x1fu) {
    return bitcast<f32>(sign | 0x7f800000u | (mant << 13u)); // inf, or NaN with its payload
  }
  if (exp == 0u) {
    // ±mant × 2^-24: a normal f32 whatever mant is (the product is exact), or ±0.
    return bitcast<f32>(sign | bitcast<u32>(f32(mant) * 5.9604644775390625e-8));
  }
  return bitcast<f32>(sign | ((exp + 112u) << 23u) | (mant << 13u));
}

@compute @workgroup_size(256)
fn f32_to_f16(@builtin(global_invocation_id) gid: vec3u) {
  let w = gid.y * p.row + gid.x;
  if (w >= p.words) {
    return;
  }
  let i = 2u * w;
  let lo = f16_bits(bitcast<u32>(x32[i]));
  var hi = 0u;
  if (i + 1u < p.n) {
    hi = f16_bits(bitcast<u32>(x32[i + 1u]));
  }
  y16[w] = lo | (hi << 16u);
}

@compute @workgroup_size(256)
fn f16_to_f32(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.n) {
    return;
  }
  let v = f16_value(x16[i >> 1u] >> (16u * (i & 1u)));
  y32[i] = {{Y_ADD:v}};
}

@compute @workgroup_size(256)
fn accumulate_f16(@builtin(global_invocation_id) gid: vec3u) {
  let w = gid.y * p.row + gid.x;
  if (w >= p.words) {
    return;
  }
  let a = y16[w];
  let b = x16[w];
  let lo = f16_bits(bitcast<u32>(f16_value(a & 0xffffu) + f16_value(b & 0xffffu)));
  let hi = f16_bits(bitcast<u32>(f16_value(a >> 16u) + f16_value(b >> 16u)));
  y16[w] = lo | (hi << 16u);
}
