// Cross-entropy over a vocabulary walked in chunks of columns (src/kernels/linear_cross_entropy.ts, launched by
// linearCrossEntropy in src/tensor/ops/loss.ts): the logits of one chunk at a time, never all of them. The chunk's
// logits x [rows, n] (columns col0 .. col0 + n of the vocabulary of v) come from a matrix product; these entries
// keep per row r the running statistics stats[3r .. 3r + 2] = (M, S, x_t): the max, the sum of exp(x - M) over
// every column seen so far, and the target's logit; stats[3 rows] = the kept rows (target != ignore).
//
//   lce_stats   ONE WORKGROUP PER ROW of the chunk (row kernel: WG and wg_reduce from kernels/row_reduce.wgsl,
//               row_max_sum from kernels/online_softmax.wgsl, appended): the chunk's (m, s), then invocation 0
//               merges it into (M, S) (first = 1: the first chunk, nothing to merge with, x_t starts NaN) and
//               takes x_t = x[r, t - col0] when the target t lies in this chunk. A row whose chunk holds a NaN or
//               +inf gets S = NaN from then on (tested on the bits, kernels/nan.wgsl), as torch's softmax; its M
//               is then unspecified. A target outside [0, v) is never taken: x_t stays NaN, so its loss is NaN.
//   lce_mean    ONE workgroup: out[0] = mean over kept rows of (M - x_t) + log(S) (NaN when none is kept, as
//               PyTorch), stats[3 rows] = kept.
//   lce_grad    ONE WORKGROUP PER ROW (WG invocations striding it), in place over the chunk:
//               x[r, k] <- gout[0] / kept * (exp(x - M) / S - [col0 + k == t]); ignored rows 0 (NaN throughout
//               when 1 / S is not finite: torch's log_softmax backward 0 - exp(y) * 0), NaN for a target outside
//               [0, v). Exactly kernels/loss.wgsl's ce_bwd on the columns of the chunk.
// Row entries run on a 2-D grid of workgroups, `gx` per grid row: row r = wid.y * gx + wid.x. f32 throughout;
// rows * n < 2^32.

struct Params {
  rows: u32,
  n: u32,      // columns of this chunk
  gx: u32,     // workgroups per grid row
  col0: u32,   // the chunk's first column
  v: u32,      // the vocabulary (all columns)
  first: u32,  // lce_stats: 1 for the first chunk
  ignore: i32, // the target of ignored rows
  nan: f32,    // a NaN (WGSL has no NaN literal)
}

@group(0) @binding(0) var<storage, read> a: array<f32>; // lce_stats: the chunk's logits (row_max_sum reads `a`)
@group(0) @binding(1) var<storage, read> targets: array<i32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> st: array<f32>; // lce_grad: the forward's stats
@group(0) @binding(5) var<storage, read> gout: array<f32>;
@group(0) @binding(6) var<storage, read_write> x: array<f32>; // lce_grad: the chunk's logits in, dlogits out
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn lce_stats(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y * p.gx + wid.x;
  if (r >= p.rows) {
    return;
  }
  let base = r * p.n;
  let ms = row_max_sum(base, lid);
  if (lid == 0u) {
    var prev = vec2f(LOWEST, 0.0);
    var xt = p.nan;
    if (p.first == 0u) {
      prev = vec2f(stats[3u * r], stats[3u * r + 1u]);
      xt = stats[3u * r + 2u];
    }
    let m = max(prev.x, ms.x);
    var s = prev.y * exp(prev.x - m) + ms.y * exp(ms.x - m);
    if (is_nan(prev.y) || is_nan(ms.y)) {
      s = p.nan; // on the bits: a finite-math compiler may drop NaN * 0
    }
    let t = targets[r];
    if (t >= i32(p.col0) && t < i32(p.col0 + p.n)) {
      xt = a[base + u32(t) - p.col0];
    }
    stats[3u * r] = m;
    stats[3u * r + 1u] = s;
    stats[3u * r + 2u] = xt;
  }
}

@compute @workgroup_size(WG)
fn lce_mean(@builtin(local_invocation_index) lid: u32) {
  var acc = vec2f(0.0);
  for (var r = lid; r < p.rows; r += WG) {
    if (targets[r] != p.ignore) {
      acc += vec2f((stats[3u * r] - stats[3u * r + 2u]) + log(stats[3u * r + 1u]), 1.0); // exact for confident rows
    }
  }
  let total = wg_reduce(acc, lid, RED_SUM);
  if (lid == 0u) {
    out[0] = select(total.x / total.y, p.nan, total.y == 0.0);
    stats[3u * p.rows] = total.y;
  }
}

@compute @workgroup_size(WG)
fn lce_grad(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y * p.gx + wid.x;
  if (r >= p.rows) {
    return;
  }
  let base = r * p.n;
  let t = targets[r];
  // kept >= 1 whenever a row is kept (st[3 * rows], written by lce_mean)
  let row = ce_grad_row(st[3u * r], st[3u * r + 1u], gout[0], st[3u * p.rows], t >= 0 && t < i32(p.v), t == p.ignore, p.nan);
  let tk = t - i32(p.col0); // the target's column in this chunk, if it is in [0, n)
  for (var k = lid; k < p.n; k += WG) {
    x[base + k] = ce_grad(row, x[base + k], i32(k) == tk);
  }
}
