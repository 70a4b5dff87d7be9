// AlignX's loss kernels (src/kernels/loss.ts, launched for src/tensor/ops/loss.ts): cross-entropy fused
// with log-softmax, masked mean pooling, and the small product behind the cosine-similarity matrix.
// (l2_normalize is the generic row kernel row_sum_map of kernels/softmax.wgsl.)
//
//   ce_fwd           cross-entropy, per row of logits `a` [rows, n]: online (m, s) of the logits
//                    (kernels/online_softmax.wgsl), then invocation 0 writes
//                    rowloss[r] = (m - x[t]) + log(s) (0 for ignored rows, NaN for a target outside [0, n))
//                    and stats[2r], stats[2r + 1] = m, s. The probabilities are never stored.
//   ce_mean          ONE workgroup: sums rowloss and counts kept rows (target != ignore) over all `rows`;
//                    out[0] = sum / kept (NaN when nothing is kept, as PyTorch), stats[2 * rows] = kept.
//   ce_bwd           per row: out[i] = gout[0] / kept * (exp(x - m) / s - [i == t]); 0 for ignored rows (NaN
//                    where exp(x - m) / s is, i.e. in the whole row when s is NaN or 0: torch's log_softmax
//                    backward gives 0 - exp(y) * 0), NaN for invalid targets.
//                    NaN and +inf as torch: a row holding either has s = NaN (kernels/online_softmax.wgsl; its m
//                    is then unspecified), so its loss and every gradient of it are NaN.
//                    The ce_* entries are row kernels: ONE WORKGROUP PER ROW of WG invocations striding the row
//                    (WG and the workgroup reduction wg_reduce: kernels/row_reduce.wgsl, appended), workgroups on
//                    a 2-D grid, `gx` per grid row: row r = wid.y * gx + wid.x. n * rows < 2^32 elements; f32
//                    accumulation. A row of all -inf gives NaN, as in PyTorch.
//   masked_mean_fwd  x [B, T, D], mask [B, T] -> out [B, D]: out[b, d] = sum_t m[b,t] x[b,t,d] / sum_t m[b,t]
//                    over positions with m != 0 (so garbage, even NaN, in masked-out positions never leaks);
//                    an all-zero mask row gives zeros. The d == 0 invocation also writes inv[b] = 1 / sum_t m
//                    (0 for an empty row) for the backward. One invocation per output (b, d), walking t:
//                    neighbouring invocations read neighbouring d (coalesced).
//   masked_mean_bwd  dx[b, t, d] = gout[b, d] * mask[b, t] * inv[b]; one invocation per element of x.
//   contract         out[r, c] = sum_k lhs[r * lr + k * lk] * rhs[k * rk + c * rc] for r < rows, c < cols,
//                    k < depth: a small strided matrix product (the cosine-similarity matrix and both its
//                    gradients). One invocation per output; meant for small rows x cols (sentence batches),
//                    not for LLM-sized matmuls (src/kernels/matmul.ts).
// masked_mean_* and contract: a 1-D index over a 2-D grid, `row` invocations per grid row; sizes < 2^32 elements.

struct Params {
  b: u32,
  t: u32,
  d: u32,
  rows: u32,
  cols: u32,
  depth: u32,
  lr: u32,
  lk: u32,
  rk: u32,
  rc: u32,
  row: u32,
  n: u32,        // ce_*: classes (the row length)
  gx: u32,       // ce_*: workgroups per grid row
  ignore: i32,   // ce_*: the target value of ignored rows
  nan: f32,      // ce_*: a NaN (WGSL has no NaN literal)
}

@group(0) @binding(0) var<storage, read> x_in: array<f32>;
@group(0) @binding(1) var<storage, read> mask: array<f32>;
@group(0) @binding(2) var<storage, read> gout: array<f32>;
@group(0) @binding(3) var<storage, read> lhs: array<f32>;
@group(0) @binding(4) var<storage, read> rhs: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> inv: array<f32>;
@group(0) @binding(7) var<storage, read> a: array<f32>; // ce_*: the logits [rows n] (kernels/online_softmax.wgsl reads `a`)
@group(0) @binding(8) var<storage, read> targets: array<i32>;
@group(0) @binding(9) var<storage, read_write> rowloss: array<f32>;
@group(0) @binding(10) var<storage, read_write> stats: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(256)
fn masked_mean_fwd(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.b * p.d) {
    return;
  }
  let b = i / p.d;
  let d = i - b * p.d;
  var acc = 0.0;
  var cnt = 0.0;
  for (var t = 0u; t < p.t; t++) {
    let m = mask[b * p.t + t];
    if (nonzero(m)) { // on the bits: a NaN mask value counts (and makes the mean NaN), -0 does not
      acc += m * x_in[(b * p.t + t) * p.d + d];
      cnt += m;
    }
  }
  let w = select(1.0 / cnt, 0.0, !nonzero(cnt)); // NaN for a NaN count
  out[i] = acc * w;
  if (d == 0u) {
    inv[b] = w;
  }
}

@compute @workgroup_size(256)
fn masked_mean_bwd(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.b * p.t * p.d) {
    return;
  }
  let bt = i / p.d;
  let d = i - bt * p.d;
  let b = bt / p.t;
  out[i] = gout[b * p.d + d] * mask[bt] * inv[b];
}

@compute @workgroup_size(256)
fn contract(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.rows * p.cols) {
    return;
  }
  let r = i / p.cols;
  let c = i - r * p.cols;
  var acc = 0.0;
  for (var k = 0u; k < p.depth; k++) {
    acc += lhs[r * p.lr + k * p.lk] * rhs[k * p.rk + c * p.rc];
  }
  out[i] = acc;
}

@compute @workgroup_size(WG)
fn ce_fwd(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y * p.gx + wid.x;
  if (r >= p.rows) {
    return;
  }
  let base = r * p.n;
  let ms = row_max_sum(base, lid);
  if (lid == 0u) {
    let t = targets[r];
    var loss = 0.0;
    if (t != p.ignore) {
      if (t < 0 || t >= i32(p.n)) {
        loss = p.nan;
      } else {
        loss = (ms.x - a[base + u32(t)]) + log(ms.y); // not (m + log s) - x[t]: exact for confident rows
      }
    }
    rowloss[r] = loss;
    stats[2u * r] = ms.x;
    stats[2u * r + 1u] = ms.y;
  }
}

@compute @workgroup_size(WG)
fn ce_mean(@builtin(local_invocation_index) lid: u32) {
  var acc = vec2f(0.0);
  for (var r = lid; r < p.rows; r += WG) {
    if (targets[r] != p.ignore) {
      acc += vec2f(rowloss[r], 1.0);
    }
  }
  let total = wg_reduce(acc, lid, RED_SUM);
  if (lid == 0u) {
    out[0] = select(total.x / total.y, p.nan, total.y == 0.0);
    stats[2u * p.rows] = total.y;
  }
}

@compute @workgroup_size(WG)
fn ce_bwd(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y * p.gx + wid.x;
  if (r >= p.rows) {
    return;
  }
  let base = r * p.n;
  let t = targets[r];
  // kept >= 1 whenever a row is kept (stats[2 * rows], written by ce_mean)
  let row = ce_grad_row(stats[2u * r], stats[2u * r + 1u], gout[0], stats[2u * p.rows], t >= 0 && t < i32(p.n), t == p.ignore, p.nan);
  for (var k = lid; k < p.n; k += WG) {
    out[base + k] = ce_grad(row, a[base + k], i32(k) == t);
  }
}
