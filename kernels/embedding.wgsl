// Embedding lookup and its deterministic scatter-add gradient (launchers: src/kernels/embedding.ts).
//
// ids: n int32 row indices into table [v, d] (row-major). Invalid ids (outside [0, v)) never index memory:
// their output rows are `oob` (NaN) and they add nothing to the gradient.
//
// Rows move in units of VT (define): vec4<f32> when d % 4 == 0 (then p.d below counts vec4s per row: every
// load moves 4 elements, which matters most on CPU drivers, where each load costs a per-lane loop), else f32.
//   gather   one invocation per output unit (n*d, j fastest): out[t*d + j] = table[ids[t]*d + j].
//   rank     backward, step 1 (when the ids live only on the GPU): a stable sort of the n ids by rank
//            counting. Invocation t counts the (id, position) pairs that order before its own, reading the
//            ids in 256-wide tiles through workgroup memory, and writes order[rank] = t and
//            order[n + rank] = ids[t]. O(n^2) comparisons (see the cost below); ties keep position order,
//            so the sort, and everything after it, is deterministic.
//   bounds_search  step 2: bounds[u] = the first k with order[n + k] >= u, for u in 0..v (v + 1 invocations,
//            binary search), so rows of id u are order[bounds[u] .. bounds[u + 1]).
//   scatter  step 3: one invocation per unit of dtable (bound as `out`; v*d, j fastest):
//            dtable[u*d + j] = sum of gout[t*d + j] over the positions t of id u in increasing order;
//            rows no id names get 0. Each element is written exactly once: no atomics, no zero-fill pass.
// Cost at v = 128k, n = 8k, d = 4096 (estimates, not yet measured on a GPU): scatter writes the dense 2 GiB
// dtable once (~1 ms at H100 bandwidth) and reads gout (128 MiB) once; a 256-wide workgroup spans at most two
// rows when d >= 256, so its loop is near-uniform and its gout reads coalesced. rank: n^2 = 67M integer
// compares in 32 workgroups (tens of microseconds); bounds_search: (v + 1) * log2(n) reads.
// Per-element entry points take `row` invocations per grid row (2-D grids); rank takes `gx` workgroups per
// grid row. Limits: n*d and v*d < 2^32, n < 2^31.

struct Params {
  n: u32,
  d: u32,
  v: u32,
  row: u32,
  gx: u32,
  oob: f32,
}

@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read> table: array<{{VT:f32}}>;
@group(0) @binding(2) var<storage, read> gout: array<{{VT:f32}}>;
@group(0) @binding(3) var<storage, read> order_in: array<i32>;
@group(0) @binding(4) var<storage, read> bounds_in: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<{{VT:f32}}>;
@group(0) @binding(6) var<storage, read_write> order: array<i32>;
@group(0) @binding(7) var<storage, read_write> bounds: array<u32>;
@group(1) @binding(0) var<uniform> p: Params;

const WG: u32 = 256u;
var<workgroup> tile: array<i32, WG>;

@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.n * p.d) {
    return;
  }
  let t = i / p.d;
  let j = i - t * p.d;
  let id = ids[t];
  if (id >= 0 && u32(id) < p.v) {
    out[i] = table[u32(id) * p.d + j];
  } else {
    out[i] = {{VT:f32}}(p.oob);
  }
}

@compute @workgroup_size(WG)
fn rank(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let first = (wid.y * p.gx + wid.x) * WG;
  if (first >= p.n) {
    return;
  }
  let t = first + lid;
  let live = t < p.n;
  var id = 0;
  if (live) {
    id = ids[t];
  }
  var r = 0u;
  for (var base = 0u; base < p.n; base += WG) {
    if (base + lid < p.n) {
      tile[lid] = ids[base + lid];
    }
    workgroupBarrier();
    let m = min(WG, p.n - base);
    for (var k = 0u; k < m; k++) {
      let o = tile[k];
      r += u32(o < id || (o == id && base + k < t));
    }
    workgroupBarrier();
  }
  if (live) {
    order[r] = i32(t);
    order[p.n + r] = id;
  }
}

@compute @workgroup_size(256)
fn bounds_search(@builtin(global_invocation_id) gid: vec3u) {
  let u = gid.y * p.row + gid.x;
  if (u > p.v) {
    return;
  }
  var lo = 0u;
  var hi = p.n;
  while (lo < hi) {
    let mid = (lo + hi) / 2u;
    if (order_in[p.n + mid] < i32(u)) {
      lo = mid + 1u;
    } else {
      hi = mid;
    }
  }
  bounds[u] = lo;
}

@compute @workgroup_size(256)
fn scatter(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.v * p.d) {
    return;
  }
  let u = i / p.d;
  let j = i - u * p.d;
  var acc = {{VT:f32}}(0.0);
  let k1 = bounds_in[u + 1u];
  for (var k = bounds_in[u]; k < k1; k++) {
    acc += gout[u32(order_in[k]) * p.d + j];
  }
  out[i] = acc;
}
