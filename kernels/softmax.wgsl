// Row kernels over the last axis (src/tensor/ops/softmax.ts, src/tensor/ops/loss.ts): softmax,
// log_softmax, their backward, l2_normalize, and cross-entropy fused with log-softmax.
//
// Layout: the input is `rows` contiguous rows of `n` f32 (the last axis). Launch: ONE WORKGROUP PER ROW,
// WG invocations (256 on GPUs, 8 on lavapipe: kernels/row_reduce.wgsl, appended, reduces) striding the row (coalesced: neighbouring invocations read neighbouring addresses),
// so rows of any length work (1, 7, 300, 5000, ...; shorter than WG leaves invocations idle). Workgroups sit
// on a 2-D grid, `gx` per grid row: row r = wid.y * gx + wid.x (rows > 65535 are fine).
//
//   softmax_fwd  one read pass of online max/sum-of-exp (m, s) (each invocation keeps its own pair, the
//                workgroup merges them), then out[i] = OUT, an expression in x, m, s (placeholder): softmax
//                `exp(x - m) / s`, log_softmax `(x - m) - log(s)`. Max-subtracted: exp never sees x > m.
//   row_sum_map  generic "reduce the row, then map it" (placeholders): LOAD declares the per-element values
//                (e.g. `let y = a[i]; let g = b[i];`), TERM is a vec2f summed over the row into `s`, then
//                out[i] = MAP. Serves softmax/log_softmax backward and l2_normalize both ways.
//   attn_softmax attention probabilities from raw scores (the unfused attention of src/tensor/ops/attention.ts):
//                row r holds the scores of query i = r % n against keys 0 .. n - 1; with x = scale * a,
//                key j visible when (!causal or j <= i) and (!has_mask or b[(r / batch_rows) * n + j] != 0),
//                out = exp(x - m) / s over the visible keys and 0 elsewhere; a row with no visible key is
//                all 0 (as the fused kernel: no NaN).
//   ce_fwd       cross-entropy, per row: online (m, s) of the logits, then invocation 0 writes
//                rowloss[r] = (m - x[t]) + log(s) (0 for ignored rows, NaN for a target outside [0, n))
//                and stats[2r], stats[2r + 1] = m, s. The probabilities are never stored.
//   ce_mean      ONE workgroup: sums rowloss and counts kept rows (target != ignore) over all `rows`;
//                out[0] = sum / kept (NaN when nothing is kept, as PyTorch), stats[2 * rows] = kept.
//   ce_bwd       per row: out[i] = gout[0] / kept * (exp(x - m) / s - [i == t]); 0 for ignored rows, NaN
//                for invalid targets.
//
// Limits: n * rows < 2^32 elements; f32 accumulation (sums of up to n / WG terms per invocation, then a
// tree or a subgroup reduction). Values of +-inf are not special-cased: a row of all -inf gives NaN, as in PyTorch.

struct Params {
  rows: u32,
  n: u32,
  gx: u32,
  ignore: i32,
  eps: f32,
  nan: f32,
  scale: f32,       // attn_softmax: score scale
  causal: u32,      // attn_softmax: 1 = key j visible to query i only when j <= i
  has_mask: u32,    // attn_softmax: 1 = b holds the key-padding mask [batch n] (1 keep and 0 pad)
  batch_rows: u32,  // attn_softmax: rows per batch element (the mask row of row r is r / batch_rows)
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> rowloss: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

const LOWEST: f32 = -0x1.fffffep+127f; // the most negative finite f32

// One more element x into an online (max m, sum of exp(x - m)) pair.
fn online_push(ms: vec2f, x: f32) -> vec2f {
  if (x > ms.x) {
    return vec2f(x, ms.y * exp(ms.x - x) + 1.0);
  }
  return vec2f(ms.x, ms.y + exp(x - ms.x));
}

// (max, sum of exp(x - max)) over a[base .. base + n).
fn row_max_sum(base: u32, lid: u32) -> vec2f {
  var ms = vec2f(LOWEST, 0.0);
  for (var k = lid; k < p.n; k += WG) {
    ms = online_push(ms, a[base + k]);
  }
  return wg_reduce(ms, lid, RED_SOFTMAX);
}

@compute @workgroup_size(WG)
fn softmax_fwd(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y * p.gx + wid.x;
  if (r >= p.rows) {
    return;
  }
  let base = r * p.n;
  let ms = row_max_sum(base, lid);
  let m = ms.x;
  let s = ms.y;
  for (var k = lid; k < p.n; k += WG) {
    let x = a[base + k];
    out[base + k] = {{OUT:x}};
  }
}

@compute @workgroup_size(WG)
fn row_sum_map(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y * p.gx + wid.x;
  if (r >= p.rows) {
    return;
  }
  let base = r * p.n;
  var acc = vec2f(0.0);
  for (var i = base + lid; i < base + p.n; i += WG) {
    {{LOAD:}}
    acc += {{TERM:vec2f(0.0)}};
  }
  let s = wg_reduce(acc, lid, RED_SUM);
  for (var i = base + lid; i < base + p.n; i += WG) {
    {{LOAD:}}
    out[i] = {{MAP:0.0}};
  }
}

fn key_visible(r: u32, i: u32, j: u32) -> bool {
  return (p.causal == 0u || j <= i) && (p.has_mask == 0u || b[(r / p.batch_rows) * p.n + j] != 0.0);
}

@compute @workgroup_size(WG)
fn attn_softmax(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y * p.gx + wid.x;
  if (r >= p.rows) {
    return;
  }
  let base = r * p.n;
  let i = r % p.n;
  let end = select(p.n, min(i + 1u, p.n), p.causal != 0u); // keys past `end` are never visible
  var acc = vec2f(LOWEST, 0.0);
  for (var j = lid; j < end; j += WG) {
    if (key_visible(r, i, j)) {
      acc = online_push(acc, p.scale * a[base + j]);
    }
  }
  let ms = wg_reduce(acc, lid, RED_SOFTMAX);
  let inv = select(0.0, 1.0 / ms.y, ms.y > 0.0);
  for (var j = lid; j < p.n; j += WG) {
    var y = 0.0;
    if (j < end && key_visible(r, i, j)) {
      y = exp(p.scale * a[base + j] - ms.x) * inv;
    }
    out[base + j] = y;
  }
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
  let ignored = t == p.ignore;
  let valid = t >= 0 && t < i32(p.n);
  let scale = select(p.nan, b[0] / stats[2u * p.rows], valid); // kept >= 1 whenever a row is kept
  let m = stats[2u * r];
  let inv_s = 1.0 / stats[2u * r + 1u];
  for (var k = lid; k < p.n; k += WG) {
    let prob = exp(a[base + k] - m) * inv_s;
    let grad = scale * (prob - select(0.0, 1.0, i32(k) == t));
    out[base + k] = select(grad, 0.0, ignored);
  }
}
