// Sum and mean over one axis (src/tensor/ops/reduce.ts). The input is seen as [outer, n, inner] and the
// output as [outer, inner], multiplied by `scale` (1 for sum, 1/n for mean).
//
//   sum_rows  inner == 1: one workgroup per output row; 256 invocations stride the row and tree-reduce in
//             workgroup memory. Row r covers elements [r*n, min((r+1)*n, len)), so a long total sum can
//             run as two passes over ragged chunks.
//   sum_cols  inner > 1: one invocation per output walks its column; neighbouring invocations read
//             neighbouring addresses.
//   expand    the backward of both: out[o, k, j] = src[o, j] * scale over all len = outer*n*inner elements.
// Workgroups sit on a 2-D grid: `gx` workgroups per grid row (sum_rows), `row` invocations per grid row.

struct Params {
  outer: u32,
  n: u32,
  inner: u32,
  len: u32,
  row: u32,
  gx: u32,
  scale: f32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn sum_rows(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y * p.gx + wid.x;
  if (r >= p.outer) {
    return;
  }
  let start = r * p.n;
  let end = min(start + p.n, p.len);
  var acc = 0.0;
  for (var k = start + lid; k < end; k += WG) {
    acc += src[k];
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      partial[lid] += partial[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    dst[r] = partial[0] * p.scale;
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
  var acc = 0.0;
  for (var k = 0u; k < p.n; k++) {
    acc += src[base + k * p.inner];
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
