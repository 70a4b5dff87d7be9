// Row kernels over the last axis (src/kernels/softmax.ts, launched for src/tensor/ops/softmax.ts and
// loss.ts): softmax, log_softmax, their backward, l2_normalize, and the attention probabilities of the
// unfused attention. (Cross-entropy, fused with log-softmax, is in kernels/loss.wgsl.)
//
// Layout: the input is `rows` contiguous rows of `n` f32 (the last axis). Launch: ONE WORKGROUP PER ROW,
// WG invocations (256 on GPUs, 8 on lavapipe: kernels/row_reduce.wgsl, appended, reduces) striding the row (coalesced: neighbouring invocations read neighbouring addresses),
// so rows of any length work (1, 7, 300, 5000, ...; shorter than WG leaves invocations idle). Workgroups sit
// on a 2-D grid, `gx` per grid row: row r = wid.y * gx + wid.x (rows > 65535 are fine).
// kernels/online_softmax.wgsl (appended too) keeps the online (max, sum of exp) pairs.
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
//                all 0 (as the fused kernel: no NaN). A NaN among the visible scores makes the row's visible
//                probabilities NaN (torch's softmax; invisible scores are never read).
//
// Limits: n * rows < 2^32 elements; f32 accumulation (sums of up to n / WG terms per invocation, then a
// tree or a subgroup reduction). NaN and +-inf as in PyTorch: a row holding a NaN or a +inf gives NaN everywhere
// (online_softmax.wgsl softmax_pair), and so does a row of all -inf.

struct Params {
  rows: u32,
  n: u32,
  gx: u32,
  eps: f32,
  scale: f32,       // attn_softmax: score scale
  causal: u32,      // attn_softmax: 1 = key j visible to query i only when j <= i
  has_mask: u32,    // attn_softmax: 1 = b holds the key-padding mask [batch n] (1 keep and 0 pad)
  batch_rows: u32,  // attn_softmax: rows per batch element (the mask row of row r is r / batch_rows)
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

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
  return (p.causal == 0u || j <= i) && (p.has_mask == 0u || nonzero(b[(r / p.batch_rows) * p.n + j])); // NaN keeps the key
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
  let ms = softmax_pair(wg_reduce(acc, lid, RED_SOFTMAX));
  let inv = select(0.0, 1.0 / ms.y, nonzero(ms.y)); // s >= 1, 0 (no visible key) or NaN (a NaN score): by the bits
  for (var j = lid; j < p.n; j += WG) {
    var y = 0.0;
    if (j < end && key_visible(r, i, j)) {
      y = exp(p.scale * a[base + j] - ms.x) * inv;
    }
    out[base + j] = y;
  }
}
