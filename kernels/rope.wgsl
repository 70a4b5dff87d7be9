// Rotary position embedding, HF LLaMA's rotate-half convention (launchers: src/kernels/rope.ts).
//
// For each (b, h, t) row of head dimension dh = 2 * half, and i < half, with angle = f32(pos[b, t]) * inv_freq[i]
// (the f32 product HF forms; inv_freq comes from the host, computed in f32 exactly as HF does):
//   out[i]        = x[i] * cos - x[i + half] * s
//   out[i + half] = x[i + half] * cos + x[i] * s                 s = dir * sin(angle)
// which is x * cos + rotate_half(x) * sin for dir = 1 (forward), and the inverse rotation, the backward, for
// dir = -1. One invocation per (b, h, t, i) pair, i fastest, enumerated in the OUTPUT's layout: `hmajor` = 1
// for [B, H, T, dh] (out row = (b*H + h)*T + t), 0 for [B, T, H, dh] (out row = (b*T + t)*H + h); so output
// rows are written contiguously, and the input is read through element strides sb, sh, st (either layout:
// this is where a [B, T, H, dh] projection becomes attention's [B, H, T, dh] without a separate transpose).
// pos is [B, T] (pb = T) or [T] shared by the batch (pb = 0). `row` invocations per grid row (2-D grid).
// With define PAIR, one dispatch rotates two tensors of the same B, T, dh and layouts (q and k: HF's
// apply_rotary_pos_emb): workgroup z = 1 takes x2 -> out2 with their own n2, heads2 and strides (z is uniform
// per workgroup, so each workgroup reads one pair of bindings).
//
// sin and cos are computed here, not by WGSL's sin/cos, whose accuracy is unspecified outside [-pi, pi]
// (GPUs reduce large arguments coarsely; at angle 8192 that can be 1e-3 off): Cody-Waite reduction by pi/2
// with pi/2 split in three 13-bit parts plus a rounded fourth and the quotient split in 11-bit halves, so
// every product is exact in f32 without relying on FMA; then cephes' sinf/cosf polynomials on [-pi/4, pi/4].
// Within ~1e-7 (about 1 ulp of 1) of torch's float32 sin/cos of the same angle for |angle| < 2^21, i.e.
// positions up to 2M when inv_freq[0] = 1. Limits: B*H*T*half < 2^32.

struct Params {
  n: u32,
  row: u32,
  half: u32,
  heads: u32,
  seq: u32,
  hmajor: u32,
  sb: u32,
  sh: u32,
  st: u32,
  pb: u32,
  dir: f32,
  n2: u32,
  heads2: u32,
  sb2: u32,
  sh2: u32,
  st2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> pos: array<i32>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
//#if PAIR
@group(0) @binding(4) var<storage, read> x2: array<f32>;
@group(0) @binding(5) var<storage, read_write> out2: array<f32>;
//#endif
@group(1) @binding(0) var<uniform> p: Params;

// pi/2 = C1 + C2 + C3 + C4: C1..C3 have 13 significant bits each (so q * Ck is exact for |q| < 2^11).
const C1: f32 = 0x1.921p+0;
const C2: f32 = 0x1.f6ap-13;
const C3: f32 = 0x1.11p-26;
const C4: f32 = 0x1.68c234p-39;

// (sin a, cos a) for an f32 angle a, |a| < 2^21.
fn sincos(a: f32) -> vec2f {
  let q = round(a * 0.636619772367581343); // nearest multiple of pi/2
  let qh = round(q * (1.0 / 2048.0)) * 2048.0; // q = qh + ql, each with at most 11 significant bits
  let ql = q - qh;
  var r = a - qh * C1;
  r = r - ql * C1;
  r = r - qh * C2;
  r = r - ql * C2;
  r = r - qh * C3;
  r = r - ql * C3;
  r = r - qh * C4;
  r = r - ql * C4;
  let z = r * r;
  let s = r + r * z * ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1);
  let c = 1.0 - 0.5 * z + z * z * ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2);
  switch (i32(q) & 3) {
    case 0: { return vec2f(s, c); }
    case 1: { return vec2f(c, -s); }
    case 2: { return vec2f(-s, -c); }
    default: { return vec2f(-c, s); }
  }
}

// Element i of tensor z's input / output (z = 1 only with PAIR).
fn load_x(z: u32, i: u32) -> f32 {
//#if PAIR
  if (z == 1u) {
    return x2[i];
  }
//#endif
  return x[i];
}

fn store_out(z: u32, i: u32, v: f32) {
//#if PAIR
  if (z == 1u) {
    out2[i] = v;
    return;
  }
//#endif
  out[i] = v;
}

@compute @workgroup_size(256)
fn rope(@builtin(global_invocation_id) gid: vec3u) {
  let k = gid.y * p.row + gid.x;
  let z = gid.z;
  let second = z == 1u;
  if (k >= select(p.n, p.n2, second)) {
    return;
  }
  let heads = select(p.heads, p.heads2, second);
  let rest = k / p.half; // the output row
  let i = k - rest * p.half;
  let n2 = select(heads, p.seq, p.hmajor == 1u);
  let n1 = select(p.seq, heads, p.hmajor == 1u);
  let a2 = rest % n2;
  let a1 = (rest / n2) % n1;
  let b = rest / (n1 * n2);
  let h = select(a2, a1, p.hmajor == 1u);
  let t = select(a1, a2, p.hmajor == 1u);
  let sc = sincos(f32(pos[b * p.pb + t]) * inv_freq[i]);
  let s = p.dir * sc.x;
  let xi = b * select(p.sb, p.sb2, second) + h * select(p.sh, p.sh2, second) + t * select(p.st, p.st2, second) + i;
  let v1 = load_x(z, xi);
  let v2 = load_x(z, xi + p.half);
  let o = rest * 2u * p.half + i;
  store_out(z, o, v1 * sc.y - v2 * s);
  store_out(z, o + p.half, v2 * sc.y + v1 * s);
}
