// Shape and index ops (launchers: src/kernels/shape_ops.ts): one general strided copy that slice, narrow, concat,
// stack, permute, transpose, expand and contiguous all reduce to, plus where, clamp and index_select.
//
//   copy_strided   dst[b_off + sum_d c_d * b_d] = src[a_off + sum_d c_d * a_d]
//                  for every coordinate c of the iteration shape s (n = prod s). Both sides are arbitrary
//                  strided views of their buffers (strides may be 0 on the source: broadcast reads), so one
//                  entry serves gathers (permute, slice: dst contiguous) and scatters (concat parts, slice
//                  backward into a zeroed gradient: src contiguous). Element type {{T:f32}} (any 32-bit).
//                  Overlapping destination elements are not allowed (no accumulation).
//   where_select   out[i] = cond[ia] != 0 ? x[ib] : y[ic], cond/x/y broadcast to the output (strides a/b/c).
//                  cond != 0 as IEEE has it, tested on the bits (kernels/nan.wgsl `nonzero`, appended): a NaN
//                  condition is true (torch's bool(NaN)), -0 false.
//   where_grad     gx[i] = cond[ia] != 0 ? g[i] : 0,  gy[i] = cond[ia] != 0 ? 0 : g[i]  (output's shape;
//                  the caller sums each down to its input's shape). A select, so NaN gradients do not leak
//                  into the unselected branch (as torch.where's backward).
//   clamp_fwd      out[i] = min(max(x, lo), hi) written as selects, and x itself when x is NaN (as torch.clamp;
//                  tested on the bits: a float compare with NaN is not to be trusted, WGSL allows finite math).
//   clamp_grad     out[i] = (lo <= x && x <= hi) ? g[i] : 0: the subgradient 1 AT the bounds, 0 outside and
//                  for NaN x, on the bits too (torch 1.13's clamp_backward, a where()).
//   index_select   out[o, j, k] = src[o, ids[j], k]: src seen as [outer, rows, inner], out as
//                  [outer, m, inner]. An id outside [0, rows) yields the bit pattern `bad` (the host passes
//                  the NaN 0x7fc00000: a WGSL constant NaN does not compile).
//   index_add      acc[o, ids[j], k] += gout[o, j, k]: index_select's backward into a zeroed f32 gradient.
//                  Repeated ids accumulate with an atomic compare-and-swap loop on the f32 bits, so their
//                  summation order (and last bits) can vary run to run; distinct ids are exact. Invalid ids
//                  are skipped.
//
// Iteration shapes arrive coalesced (src/gpu/strided.ts coalesce): `rank` <= 6 dimensions, innermost first,
// sizes s0..s5, per-operand element strides a*, b*, c* and element offsets a_off, b_off, c_off.
// One invocation per element (of the iteration shape, or of the output) over a 2-D grid of 256-wide
// workgroups: flat index gid.y * row + gid.x, bounds-checked against n. Limits: n and every element offset
// below 2^32.
// Speed: the offset walk is unrolled, in registers. Neighbouring invocations move neighbouring elements of
// the innermost coalesced dimension, so loads and stores coalesce whenever that dimension is unit-stride on
// both sides (slices, concat, expand, permutes that keep the last axis, e.g. [B,T,H,D] -> [B,H,T,D]); a
// transpose of the last two axes reads with a stride (no shared-memory tiling yet). One element per
// invocation; no vec4 path yet.
//
// Params (one struct for every entry; unused fields are 0). No punctuation inside the struct:
// src/gpu/kernel.ts reads its fields by splitting on commas and semicolons, comments included.
struct Params {
  n: u32,
  row: u32,
  rank: u32,
  s0: u32, s1: u32, s2: u32, s3: u32, s4: u32, s5: u32,
  a0: u32, a1: u32, a2: u32, a3: u32, a4: u32, a5: u32,
  b0: u32, b1: u32, b2: u32, b3: u32, b4: u32, b5: u32,
  c0: u32, c1: u32, c2: u32, c3: u32, c4: u32, c5: u32,
  a_off: u32,
  b_off: u32,
  c_off: u32,
  inner: u32,
  m: u32,
  rows: u32,
  bad: u32,
  lo: f32,
  hi: f32,
}

@group(0) @binding(0) var<storage, read> src: array<{{T:f32}}>;
@group(0) @binding(1) var<storage, read_write> dst: array<{{T:f32}}>;
@group(0) @binding(2) var<storage, read> cond: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> y: array<f32>;
@group(0) @binding(5) var<storage, read> gout: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> out2: array<f32>;
@group(0) @binding(8) var<storage, read> ids: array<i32>;
@group(0) @binding(9) var<storage, read_write> acc: array<atomic<u32>>;
@group(1) @binding(0) var<uniform> p: Params;

fn flat(gid: vec3u) -> u32 {
  return gid.y * p.row + gid.x;
}

// One dimension of the index walk: peel coordinate c off `rem` and add c * (stride in a, b, c) to `o`.
fn walk(rem: ptr<function, u32>, o: ptr<function, vec3u>, size: u32, st: vec3u) {
  let c = *rem % size;
  *rem = *rem / size;
  *o += c * st;
}

// Element offsets of iteration coordinate i (row-major over s, innermost first) in the a, b and c views.
// Unrolled over the six dimensions, with no private arrays (which GPUs may spill to local memory).
fn offsets(i: u32) -> vec3u {
  var rem = i;
  var o = vec3u(p.a_off, p.b_off, p.c_off);
  walk(&rem, &o, p.s0, vec3u(p.a0, p.b0, p.c0));
  if (p.rank > 1u) {
    walk(&rem, &o, p.s1, vec3u(p.a1, p.b1, p.c1));
  }
  if (p.rank > 2u) {
    walk(&rem, &o, p.s2, vec3u(p.a2, p.b2, p.c2));
  }
  if (p.rank > 3u) {
    walk(&rem, &o, p.s3, vec3u(p.a3, p.b3, p.c3));
  }
  if (p.rank > 4u) {
    walk(&rem, &o, p.s4, vec3u(p.a4, p.b4, p.c4));
  }
  if (p.rank > 5u) {
    walk(&rem, &o, p.s5, vec3u(p.a5, p.b5, p.c5));
  }
  return o;
}

@compute @workgroup_size(256)
fn copy_strided(@builtin(global_invocation_id) gid: vec3u) {
  let i = flat(gid);
  if (i >= p.n) {
    return;
  }
  let o = offsets(i);
  dst[o.y] = src[o.x];
}

@compute @workgroup_size(256)
fn where_select(@builtin(global_invocation_id) gid: vec3u) {
  let i = flat(gid);
  if (i >= p.n) {
    return;
  }
  let o = offsets(i);
  out[i] = select(y[o.z], x[o.y], nonzero(cond[o.x]));
}

@compute @workgroup_size(256)
fn where_grad(@builtin(global_invocation_id) gid: vec3u) {
  let i = flat(gid);
  if (i >= p.n) {
    return;
  }
  let take = nonzero(cond[offsets(i).x]);
  let g = gout[i];
  out[i] = select(0.0, g, take);
  out2[i] = select(g, 0.0, take);
}

@compute @workgroup_size(256)
fn clamp_fwd(@builtin(global_invocation_id) gid: vec3u) {
  let i = flat(gid);
  if (i >= p.n) {
    return;
  }
  let v = x[i];
  let low = select(v, p.lo, v < p.lo);
  out[i] = select(select(low, p.hi, low > p.hi), v, is_nan(v));
}

@compute @workgroup_size(256)
fn clamp_grad(@builtin(global_invocation_id) gid: vec3u) {
  let i = flat(gid);
  if (i >= p.n) {
    return;
  }
  let v = x[i];
  out[i] = select(0.0, gout[i], p.lo <= v && v <= p.hi && !is_nan(v));
}

// (o, j, k) of flat index i over [outer, m, inner], and the source row's id (-1 when out of range).
fn gather_coords(i: u32) -> vec4i {
  let k = i % p.inner;
  let t = i / p.inner;
  let j = t % p.m;
  let o = t / p.m;
  let id = ids[j];
  let valid = id >= 0 && u32(id) < p.rows;
  return vec4i(i32(o), select(-1, id, valid), i32(k), 0);
}

@compute @workgroup_size(256)
fn index_select(@builtin(global_invocation_id) gid: vec3u) {
  let i = flat(gid);
  if (i >= p.n) {
    return;
  }
  let c = gather_coords(i);
  if (c.y < 0) {
    dst[i] = bitcast<{{T:f32}}>(p.bad);
    return;
  }
  dst[i] = src[(u32(c.x) * p.rows + u32(c.y)) * p.inner + u32(c.z)];
}

@compute @workgroup_size(256)
fn index_add(@builtin(global_invocation_id) gid: vec3u) {
  let i = flat(gid);
  if (i >= p.n) {
    return;
  }
  let c = gather_coords(i);
  if (c.y < 0) {
    return;
  }
  let d = (u32(c.x) * p.rows + u32(c.y)) * p.inner + u32(c.z);
  let v = gout[i];
  var old = atomicLoad(&acc[d]);
  loop {
    let r = atomicCompareExchangeWeak(&acc[d], old, bitcast<u32>(bitcast<f32>(old) + v));
    if (r.exchanged) {
      break;
    }
    old = r.old_value;
  }
}
