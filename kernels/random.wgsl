// Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as
// easy as 1, 2, 3", SC 2011; the Random123 reference); launchers: src/kernels/random.ts, streams: src/tensor/rng.ts.
//
// Philox maps a 128-bit counter and a 64-bit key to four u32 words through 10 rounds of
//   (c0, c1, c2, c3) <- (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0)),  key += (W0, W1)
// (the key is bumped between rounds). WGSL has no 64-bit integers, so the 32x32 -> 64 product's high word is
// assembled from 16-bit pieces (mulhi); the low word is the wrapping u32 product.
//
// Element i of a launch takes word (i % 4) of block b = i / 4, and block b uses the counter
// (c0, c1, c2, c3) + b (a 128-bit add) under the key (k0, k1). The tensor ops pass c = (0, 0, offset_lo,
// offset_hi) and k = the generator's 64-bit seed, so every value depends only on (seed, offset, i) and each
// launch (one generator offset) owns 2^64 blocks of its own.
//
//   random_bits   bits_out[i] = the raw Philox word                                  (u32: tests, shuffles)
//   rand_uniform  out[i] = (word >> 8) * 2^-24, in [0, 1) with 24 random bits        (exact in f32)
//   rand_normal   out[i] = shift + scale * z, z ~ N(0, 1) by Box-Muller on words (0, 1) and (2, 3) of a block:
//                 r = sqrt(-2 ln u1), u1 = 1 - (w0 >> 8) * 2^-24 in [2^-24, 1]; theta = pi * (2 u2 - 1), u2
//                 from w1; z0 = r cos(theta), z1 = r sin(theta). |z| <= sqrt(48 ln 2) = 5.77 (P ~ 1e-8 cut).
//   dropout       out[i] = src[i] * (keep ? scale : 0), keep = (word >> 8) < thr (probability thr / 2^24).
//                 Forward (src = x) and backward (src = upstream gradient) run this same entry point with the
//                 same (seed, offset), so the mask is regenerated, never stored. A multiply, not a select, so
//                 NaN and Inf propagate through dropped elements as in PyTorch (x * mask * scale).
//
// Launch geometry: one invocation per block of 4 elements (it runs Philox once and writes up to 4 outputs),
// workgroups of 256 on a 2-D grid; the flat block index is gid.y * row + gid.x, bounds-checked against
// ceil(n / 4). Limits: n < 2^32 elements.

// Params: n elements; row = invocations (blocks) per grid row; counter base c0..c3 (128 bits, little word
// first); key k0, k1 (the 64-bit seed); dropout keeps when (word >> 8) < thr (thr <= 2^24) and multiplies
// by scale = 1 / (1 - p); normal returns shift + scale * z (mean, std). (No punctuation inside the struct:
// src/gpu/kernel.ts reads its fields by splitting on commas and semicolons, comments included.)
struct Params {
  n: u32,
  row: u32,
  c0: u32,
  c1: u32,
  c2: u32,
  c3: u32,
  k0: u32,
  k1: u32,
  thr: u32,
  scale: f32,
  shift: f32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> bits_out: array<u32>;
@group(1) @binding(0) var<uniform> p: Params;

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;
const TWO_POW_M24: f32 = 5.9604644775390625e-8;
const PI: f32 = 3.14159265358979323846;

// High 32 bits of the 64-bit product a * b, from 16-bit halves: a * b = hh 2^32 + (hl + lh) 2^16 + ll.
fn mulhi(a: u32, b: u32) -> u32 {
  let al = a & 0xffffu;
  let ah = a >> 16u;
  let bl = b & 0xffffu;
  let bh = b >> 16u;
  let ll = al * bl;
  let lh = al * bh;
  let hl = ah * bl;
  let hh = ah * bh;
  // Bits 16..47 of the sum of the middle terms plus the carry out of ll; < 3 * 2^16, cannot overflow.
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
}

fn philox4x32_10(counter: vec4u, key: vec2u) -> vec4u {
  var c = counter;
  var k = key;
  for (var r = 0u; r < 10u; r++) {
    if (r > 0u) {
      k += vec2u(PHILOX_W0, PHILOX_W1);
    }
    let hi0 = mulhi(PHILOX_M0, c.x);
    let lo0 = PHILOX_M0 * c.x;
    let hi1 = mulhi(PHILOX_M1, c.z);
    let lo1 = PHILOX_M1 * c.z;
    c = vec4u(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
  }
  return c;
}

// The four words of block b: Philox at counter (c0..c3) + b, with the carry through all four words.
fn block_words(b: u32) -> vec4u {
  let x = p.c0 + b;
  let cx = select(0u, 1u, x < b);
  let y = p.c1 + cx;
  let cy = select(0u, 1u, y < cx);
  let z = p.c2 + cy;
  let cz = select(0u, 1u, z < cy);
  return philox4x32_10(vec4u(x, y, z, p.c3 + cz), vec2u(p.k0, p.k1));
}

fn block_index(gid: vec3u) -> u32 {
  return gid.y * p.row + gid.x;
}

fn blocks() -> u32 {
  return (p.n + 3u) / 4u;
}

// 24 random bits as an f32 in [0, 1).
fn unit(w: u32) -> f32 {
  return f32(w >> 8u) * TWO_POW_M24;
}

// -ln(1 - v) for v = (w >> 8) * 2^-24 in [0, 1 - 2^-24]: a series near v = 0 (where a GPU log's absolute
// error would swamp the result and could even make it negative), log() elsewhere.
fn neg_log1m(w: u32) -> f32 {
  let v = unit(w);
  if (v < 0.0625) {
    // v + v^2/2 + ... + v^9/9; the first omitted term is below 2^-40 v relative.
    return v * (1.0 + v * (0.5 + v * (1.0 / 3.0 + v * (0.25 + v * (0.2 + v * (1.0 / 6.0 + v * (1.0 / 7.0 + v * (0.125 + v / 9.0))))))));
  }
  return -log(1.0 - v);
}

// Two standard normals from two words.
fn box_muller(w0: u32, w1: u32) -> vec2f {
  let r = sqrt(2.0 * neg_log1m(w0));
  let theta = PI * (2.0 * unit(w1) - 1.0);
  return r * vec2f(cos(theta), sin(theta));
}

@compute @workgroup_size(256)
fn random_bits(@builtin(global_invocation_id) gid: vec3u) {
  let b = block_index(gid);
  if (b >= blocks()) {
    return;
  }
  let w = block_words(b);
  for (var j = 0u; j < 4u; j++) {
    let i = 4u * b + j;
    if (i < p.n) {
      bits_out[i] = w[j];
    }
  }
}

@compute @workgroup_size(256)
fn rand_uniform(@builtin(global_invocation_id) gid: vec3u) {
  let b = block_index(gid);
  if (b >= blocks()) {
    return;
  }
  let w = block_words(b);
  for (var j = 0u; j < 4u; j++) {
    let i = 4u * b + j;
    if (i < p.n) {
      out[i] = unit(w[j]);
    }
  }
}

@compute @workgroup_size(256)
fn rand_normal(@builtin(global_invocation_id) gid: vec3u) {
  let b = block_index(gid);
  if (b >= blocks()) {
    return;
  }
  let w = block_words(b);
  let z01 = box_muller(w.x, w.y);
  let z23 = box_muller(w.z, w.w);
  let z = vec4f(z01, z23);
  for (var j = 0u; j < 4u; j++) {
    let i = 4u * b + j;
    if (i < p.n) {
      out[i] = p.shift + p.scale * z[j];
    }
  }
}

@compute @workgroup_size(256)
fn dropout(@builtin(global_invocation_id) gid: vec3u) {
  let b = block_index(gid);
  if (b >= blocks()) {
    return;
  }
  let w = block_words(b);
  for (var j = 0u; j < 4u; j++) {
    let i = 4u * b + j;
    if (i < p.n) {
      out[i] = src[i] * select(0.0, p.scale, (w[j] >> 8u) < p.thr);
    }
  }
}
