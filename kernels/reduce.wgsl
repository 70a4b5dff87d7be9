// Sum, mean and max over one axis (launchers: src/kernels/reduce.ts). The input is seen as [outer, n, inner] and the
// output as [outer, inner], multiplied by `scale` (1 for sum and max, 1/n for mean). The combining function
// is the define COMBINE (default a + b; max passes a NaN-propagating max) starting from `init` (0, or -inf
// for max, passed as a parameter since WGSL has no infinity literal); RED_OP names the same operation for
// the workgroup step (RED_SUM or RED_MAX of kernels/row_reduce.wgsl, appended to this file).
//
//   sum_rows  inner == 1: one workgroup per output row; WG invocations (256 on GPUs, 8 on lavapipe) stride
//             the row, then wg_reduce. Row r covers elements [r*n, min((r+1)*n, len)), so a long total sum can
//             run as two passes over ragged chunks.
//   sum_cols  inner > 1: one invocation per output walks its column; neighbouring invocations read
//             neighbouring addresses.
//   expand    the backward of sum and mean: out[o, k, j] = src[o, j] * scale over all len = outer*n*inner.
//   max_mask  max backward, step 1: dst[o, k, j] = 1 where src[o, k, j] equals the row's max aux0[o, j], else 0.
//   max_grad  max backward, step 2: dst[o, k, j] = src (the mask) * aux0[o, j] (the gradient) / aux1[o, j] (the
//             number of maxima): ties share the gradient evenly, as torch.amax.
// Workgroups sit on a 2-D grid: `gx` workgroups per grid row (sum_rows), `row` invocations per grid row.

struct Params {
  outer: u32,
  n: u32,
  inner: u32,
  len: u32,
  row: u32,
  gx: u32,
  scale: f32,
  init: f32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> aux0: array<f32>;
@group(0) @binding(3) var<storage, read> aux1: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

fn combine(a: f32, b: f32) -> f32 {
  return {{COMBINE:a + b}};
}

@compute @workgroup_size(WG)
fn sum_rows(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y * p.gx + wid.x;
  if (r >= p.outer) {
    return;
  }
  let start = r * p.n;
  let end = min(start + p.n, p.len);
  var acc = p.init;
  for (var k = start + lid; k < end; k += WG) {
    acc = combine(acc, src[k]);
  }
  let total = wg_reduce(vec2f(acc, 0.0), lid, {{RED_OP:RED_SUM}}).x;
  if (lid == 0u) {
    dst[r] = total * p.scale;
  }
}

@compute @workgroup_size(256)
fn sum_cols(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.outer * p.inner) {
    return;
  }
  let o = i / p.inner;
  let j = i - o * p.inner;
  let base = o * p.n * p.inner + j;
  var acc = p.init;
  for (var k = 0u; k < p.n; k++) {
    acc = combine(acc, src[base + k * p.inner]);
  }
  dst[i] = acc * p.scale;
}

@compute @workgroup_size(256)
fn expand(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.len) {
    return;
  }
  let o = i / (p.n * p.inner);
  let j = i % p.inner;
  dst[i] = src[o * p.inner + j] * p.scale;
}

@compute @workgroup_size(256)
fn max_mask(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.len) {
    return;
  }
  let o = i / (p.n * p.inner);
  let j = i % p.inner;
  let m = aux0[o * p.inner + j];
  dst[i] = select(0.0, 1.0, src[i] == m || (is_nan(src[i]) && is_nan(m))); // NaN equals NaN (bits: lavapipe folds x != x)
}

@compute @workgroup_size(256)
fn max_grad(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.len) {
    return;
  }
  let oj = (i / (p.n * p.inner)) * p.inner + i % p.inner;
  dst[i] = src[i] * aux0[oj] / aux1[oj];
}
