// Normalization over the last dimension (launchers: src/kernels/norm.ts): RMSNorm as HF LlamaRMSNorm (and Gemma's,
// weight applied as 1 + w) and LayerNorm as torch.nn.LayerNorm; forward and fused backward, all in f32.
//
// x is [rows, d] row-major (every leading dimension folded into rows). Per row r:
//   mean = CENTER ? sum_j x[j] / d : 0                       (LayerNorm centers, RMSNorm does not)
//   rstd = inverseSqrt(sum_j (x[j] - mean)^2 / d + eps)
//   xhat = (x - mean) * rstd,   y = xhat * W + B
// W and B are placeholders (defines W, B): W is `w[j]` (LLaMA, LayerNorm) or `(1.0 + w[j])` (Gemma),
// B is `b[j]` (LayerNorm with a bias) or `0.0`.
// `override CENTER` selects LayerNorm. stats[2r], stats[2r + 1] = mean, rstd are kept for backward.
//
//   norm_forward          one workgroup per row: WG invocations stride the row (neighbours read neighbouring
//                         addresses) and reduce with wg_reduce (kernels/row_reduce.wgsl, appended: WG and
//                         the reduction per adapter); writes y and stats_out.
//   add_rmsnorm_forward   norm_forward (RMSNorm: no CENTER, no B) of the row s = x + res, which it also writes to
//                         sum_out (the residual stream: HF's `hidden_states = residual + hidden_states` feeding the next
//                         RMSNorm); the second pass reads s back from sum_out. 4 loads per element instead of 5
//                         (add: x, res; norm: x twice, w), one dispatch instead of two (the op: src/tensor/ops/norm.ts).
//   norm_dx               one workgroup per row: with gw = g * W,
//                         dx = rstd * (gw - [CENTER] mean_j(gw) - xhat * mean_j(gw * xhat)),
//                         or, with the define DX_ADD = `dx[base + j] + v`, added into dx's contents (autograd
//                         accumulating the gradient in place: the residual stream's other part, norm.ts).
//   norm_dparams_partial  one invocation per (row chunk c, column j), j fastest: over the chunk's `chunk`
//                         rows (the last chunk ragged), part_out[(c*np + 0)*d + j] = sum g * xhat (dweight)
//                         and, when np == 2, part_out[(c*np + 1)*d + j] = sum g (dbias).
//   norm_dparams_sum      one invocation per column j: dst[j] = sum_c part[c*np*d + base + j] over `chunks`,
//                         base = 0 (dweight) or d (dbias). Fixed summation order, no atomics: deterministic.
// The row entries (norm_forward, add_rmsnorm_forward, norm_dx) move rows in VT units (define, src/gpu/grid.ts
// `vec4Units`): vec4<f32> when d % 4 == 0 (define VEC: a row is d / 4 vec4s, W and B index w and b in vec4s too and
// apply per component; each load moves 4 elements, which on CPU drivers, where every load is a per-lane loop, is
// most of the cost), else f32. Per invocation, hsum folds the 4 lanes of each unit into its scalar partial sum before
// wg_reduce; the statistics stay per row. p.d counts elements in both. The parameter passes always move f32 (they
// are left out of the vec4 variant, which binds x and gout as vec4s).
// Per-row entry points take `gx` workgroups per grid row, per-element ones `row` invocations per grid row
// (2-D grids: more than 65535 rows or columns fit). Limits: rows * d < 2^32 elements.
// On a big GPU the row kernels run one 256-wide workgroup per row (8-wide on lavapipe) (d = 4096: 16 strided loads per invocation,
// x read twice from L2 for LayerNorm's two-pass variance); the parameter gradient is spread over up to 256
// row chunks so it fills the machine, then one short pass sums the chunks.

struct Params {
  rows: u32,
  d: u32,
  eps: f32,
  gx: u32,
  row: u32,
  chunk: u32,
  chunks: u32,
  np: u32,
  base: u32,
}

@group(0) @binding(0) var<storage, read> x: array<{{VT:f32}}>;
@group(0) @binding(1) var<storage, read> w: array<{{VT:f32}}>;
@group(0) @binding(2) var<storage, read> b: array<{{VT:f32}}>;
@group(0) @binding(3) var<storage, read> gout: array<{{VT:f32}}>;
@group(0) @binding(4) var<storage, read> stats: array<f32>;
@group(0) @binding(5) var<storage, read> part: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<{{VT:f32}}>;
@group(0) @binding(7) var<storage, read_write> stats_out: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx: array<{{VT:f32}}>;
@group(0) @binding(9) var<storage, read_write> part_out: array<f32>;
@group(0) @binding(10) var<storage, read_write> dst: array<f32>;
@group(0) @binding(11) var<storage, read> res: array<{{VT:f32}}>;
@group(0) @binding(12) var<storage, read_write> sum_out: array<{{VT:f32}}>;
@group(1) @binding(0) var<uniform> p: Params;

override CENTER: bool = false;

//#if VEC
const VW: u32 = 4u; // elements per VT unit

// The sum of a unit's lanes, pairwise.
fn hsum(v: vec4f) -> f32 {
  return (v.x + v.y) + (v.z + v.w);
}
//#else
const VW: u32 = 1u;

fn hsum(v: f32) -> f32 {
  return v;
}
//#endif

// Row r's saved (mean, rstd), read once per row: every load is costly on CPU drivers (see bench/NOTES.md).
fn row_stats(r: u32) -> vec2f {
  return vec2f(stats[2u * r], stats[2u * r + 1u]);
}

// xhat of unit k, given its row's (mean, rstd).
fn xhat_at(k: u32, st: vec2f) -> {{VT:f32}} {
  return (x[k] - st.x) * st.y;
}

@compute @workgroup_size(WG)
fn norm_forward(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y * p.gx + wid.x;
  if (r >= p.rows) {
    return;
  }
  let du = p.d / VW;
  let base = r * du;
  let n = f32(p.d);
  var mean = 0.0;
  if (CENTER) {
    var s = 0.0;
    for (var j = lid; j < du; j += WG) {
      s += hsum(x[base + j]);
    }
    mean = wg_reduce(vec2f(s, 0.0), lid, RED_SUM).x / n;
  }
  var ss = 0.0;
  for (var j = lid; j < du; j += WG) {
    let c = x[base + j] - mean;
    ss += hsum(c * c);
  }
  let rstd = inverseSqrt(wg_reduce(vec2f(ss, 0.0), lid, RED_SUM).x / n + p.eps);
  for (var j = lid; j < du; j += WG) {
    let xhat = (x[base + j] - mean) * rstd;
    y[base + j] = xhat * {{W:w[j]}} + {{B:0.0}};
  }
  if (lid == 0u) {
    stats_out[2u * r] = mean;
    stats_out[2u * r + 1u] = rstd;
  }
}

@compute @workgroup_size(WG)
fn add_rmsnorm_forward(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y * p.gx + wid.x;
  if (r >= p.rows) {
    return;
  }
  let du = p.d / VW;
  let base = r * du;
  var ss = 0.0;
  for (var j = lid; j < du; j += WG) {
    let s = x[base + j] + res[base + j];
    sum_out[base + j] = s;
    ss += hsum(s * s);
  }
  let rstd = inverseSqrt(wg_reduce(vec2f(ss, 0.0), lid, RED_SUM).x / f32(p.d) + p.eps);
  for (var j = lid; j < du; j += WG) {
    let xhat = sum_out[base + j] * rstd; // this invocation's own store of the first loop
    y[base + j] = xhat * {{W:w[j]}} + {{B:0.0}};
  }
  if (lid == 0u) {
    stats_out[2u * r] = 0.0;
    stats_out[2u * r + 1u] = rstd;
  }
}

@compute @workgroup_size(WG)
fn norm_dx(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y * p.gx + wid.x;
  if (r >= p.rows) {
    return;
  }
  let du = p.d / VW;
  let base = r * du;
  let st = row_stats(r);
  var acc = vec2f(0.0, 0.0);
  for (var j = lid; j < du; j += WG) {
    let xhat = xhat_at(base + j, st);
    let gw = gout[base + j] * {{W:w[j]}};
    acc += vec2f(hsum(gw), hsum(gw * xhat));
  }
  let m = wg_reduce(acc, lid, RED_SUM) / f32(p.d);
  let mgw = select(0.0, m.x, CENTER);
  for (var j = lid; j < du; j += WG) {
    let xhat = xhat_at(base + j, st);
    let gw = gout[base + j] * {{W:w[j]}};
    let v = st.y * (gw - mgw - xhat * m.y);
    dx[base + j] = {{DX_ADD:v}};
  }
}

//#if VEC
//#else
@compute @workgroup_size(256)
fn norm_dparams_partial(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.chunks * p.d) {
    return;
  }
  let c = i / p.d;
  let j = i - c * p.d;
  let r1 = min(p.rows, (c + 1u) * p.chunk);
  var sw = 0.0;
  var sb = 0.0;
  for (var r = c * p.chunk; r < r1; r++) {
    let g = gout[r * p.d + j];
    sw += g * xhat_at(r * p.d + j, row_stats(r));
    sb += g;
  }
  part_out[c * p.np * p.d + j] = sw;
  if (p.np == 2u) {
    part_out[(c * p.np + 1u) * p.d + j] = sb;
  }
}

@compute @workgroup_size(256)
fn norm_dparams_sum(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.y * p.row + gid.x;
  if (j >= p.d) {
    return;
  }
  let stride = p.np * p.d;
  var s = 0.0;
  for (var c = 0u; c < p.chunks; c++) {
    s += part[c * stride + p.base + j];
  }
  dst[j] = s;
}
//#endif
