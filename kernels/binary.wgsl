// Elementwise binary ops with NumPy broadcasting (add, sub, mul, div; src/tensor/ops/binary.ts).
//
//   binary        out[i] = F(x = a[i], y = b[i])          same-shape contiguous operands, in VT units
//   binary_grad_flat  out[i] = D(g = gout[i], x = a[i], y = b[i])  the same for a gradient, in VT units
//   binary_bcast  out[i] = F(x = a[ia], y = b[ib])        any broadcast
//   binary_grad   out[i] = D(g = gout[i], x, y)           one input's gradient over the OUTPUT's shape;
//                                                         the caller sums it down to the input's shape
//
// {{F}} and {{D}} are WGSL expressions (mul: `x * y`; its gradient wrt b: `g * x`); {{LOAD}} declares the x
// and y that D reads (`let x = a[o.x];`), so a backward binds only the saved tensors it needs. A dispatch
// sets all three (the unused ones to `0.0` and empty): a shader module holds every entry point.
// Shapes arrive coalesced (src/tensor/shape.ts): `rank` <= 6 dimensions, innermost first, sizes s0..s5, and
// each operand's element strides a0..a5, b0..b5 (0 along a broadcast dimension).
// One invocation per output element over a 2-D grid (`row` invocations per grid row). VT (define) is
// vec4<f32> for the flat entries when the size is a multiple of 4 (src/gpu/grid.ts `elementwise`; then n
// counts vec4s), else f32; F and D read the same for either.

struct Params {
  n: u32, row: u32, rank: u32,
  s0: u32, s1: u32, s2: u32, s3: u32, s4: u32, s5: u32,
  a0: u32, a1: u32, a2: u32, a3: u32, a4: u32, a5: u32,
  b0: u32, b1: u32, b2: u32, b3: u32, b4: u32, b5: u32,
}

@group(0) @binding(0) var<storage, read> a: array<{{VT:f32}}>;
@group(0) @binding(1) var<storage, read> b: array<{{VT:f32}}>;
@group(0) @binding(2) var<storage, read> gout: array<{{VT:f32}}>;
@group(0) @binding(3) var<storage, read_write> out: array<{{VT:f32}}>;
@group(1) @binding(0) var<uniform> p: Params;

// Element offsets into a and b of output element i.
fn offsets(i: u32) -> vec2u {
  var shape = array<u32, 6>(p.s0, p.s1, p.s2, p.s3, p.s4, p.s5);
  var sa = array<u32, 6>(p.a0, p.a1, p.a2, p.a3, p.a4, p.a5);
  var sb = array<u32, 6>(p.b0, p.b1, p.b2, p.b3, p.b4, p.b5);
  var rem = i;
  var o = vec2u(0u, 0u);
  for (var d = 0u; d < p.rank; d++) {
    let c = rem % shape[d];
    rem = rem / shape[d];
    o += c * vec2u(sa[d], sb[d]);
  }
  return o;
}

@compute @workgroup_size(256)
fn binary(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.n) {
    return;
  }
  let x = a[i];
  let y = b[i];
  out[i] = {{F}};
}

@compute @workgroup_size(256)
fn binary_bcast(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.n) {
    return;
  }
  let o = offsets(i);
  let x = a[o.x];
  let y = b[o.y];
  out[i] = {{F}};
}

@compute @workgroup_size(256)
fn binary_grad(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.n) {
    return;
  }
  let o = offsets(i);
  let g = gout[i];
  {{LOAD}}
  out[i] = {{D}};
}

@compute @workgroup_size(256)
fn binary_grad_flat(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.n) {
    return;
  }
  let o = vec2u(i, i);
  let g = gout[i];
  {{LOAD}}
  out[i] = {{D}};
}
