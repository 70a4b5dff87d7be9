// Fused scaled-dot-product attention, flash-attention style (src/tensor/ops/attention.ts).
//
//   out[b,h,i,:] = sum_j P[i,j] v[b,kvh,j,:],  P = softmax_j(scale * q[b,h,i,:] . k[b,kvh,j,:] over visible j)
//
// with grouped-query attention (kvh = h / group, group = Hq / Hkv) and visibility
// visible(i, j) = j < T, (!causal or j <= i), and (no mask or mask[b, j] != 0) (key padding, HF's
// attention_mask: 1 keep, 0 pad). The T x T score matrix never exists in memory: scores live in registers
// and workgroup memory one tile at a time.
//
//   attn_fwd       out, and lse[b,h,i] = logsumexp_j of the visible scaled scores (online softmax)
//   attn_bwd_prep  stats_w[b,h,i] = (lse, D = dout . out), one invocation per query row
//   attn_bwd_dq    dq = scale * sum_j dS[i,j] k_j,             dS = P (dout_i . v_j - D_i)
//   attn_bwd_dkdv  dv = sum_i P[i,j] dout_i,  dk = scale * sum_i dS[i,j] q_i  (FlashAttention-2); summed
//                  over the `group` query heads sharing a kv head inside one workgroup: deterministic,
//                  no atomics. P is recomputed from q, k and lse.
//
// A query row with no visible key (e.g. a left-padded position under causal + padding) gets out = 0,
// lse = LSE_NONE and zero gradients (torch's SDPA gives NaN there; HF avoids such rows).
// NaN propagates as in torch: a NaN among a row's visible scores (from q or k) makes its softmax, out and lse
// NaN, and so the gradients that read them; a NaN in v, dout or a gradient input reaches what it multiplies.
// Invisible pairs take no part at all (as torch's flash kernels skip masked blocks): their weights in `w` are
// MASKED, recognized by the bits (`is_masked`) and skipped, so they add nothing, not 0 times a NaN. A row's sum
// of exp is tested on the bits too (`nonzero`, kernels/nan.wgsl appended): a float compare would read a NaN score
// as masked and a NaN sum as "no key" (and lavapipe compiles float compares as if NaN did not exist).
//
// Layout: q, dout, out, dq [B, Hq, T, Dh]; k, v, dk, dv [B, Hkv, T, Dh] ("bhtd"), or q, dout, out, dq
// [B, T, Hq, Dh] and k, v, dk, dv [B, T, Hkv, Dh] ("bthd": the projections' own layout, so the model needs no
// transposed copies around attention, forward or backward). Either way a (batch, head, token) row of Dh is
// contiguous and starts at vec4 b * H * T * DH4 + head * sh + token * st (`q_row`, `kv_row`): bhtd sh = T * DH4,
// st = DH4; bthd sh = DH4, st = H * DH4 (the uniforms q_sh q_st kv_sh kv_st, in vec4). lse [B, Hq, T] and
// stats [B, Hq, T] of vec2 (lse, D) are bhtd in both; mask [B, T] (read only when has_mask; the caller binds some
// other buffer otherwise). All f32; Dh = 4 * DH4 (rows are read as vec4).
// Memory: a tile load reads COLS rows of DH4 vec4; consecutive lanes read consecutive vec4 of a row, a row
// boundary being the only break. In bhtd the tile is one contiguous span; in bthd its rows lie H * Dh floats
// apart, each still contiguous and 16-byte aligned (Dh % 4 == 0), so a GPU coalesces a row's 4 * Dh bytes
// (256 B at Dh 64) as before. On lavapipe every load costs the same wherever it points.
//
// Launch geometry (fwd, dq, dkdv): one workgroup per block of ROWS resident rows of one head
// (wid.x = block, wid.y = b * heads + head), WG = ROWS * TPR invocations: TPR lanes per row, lane l owning
// head-dim vec4 columns l, l + TPR, ... (OV = ceil(DH4 / TPR) registers of each row vector). Resident rows
// are queries (fwd, dq; heads = Hq) or keys (dkdv; heads = Hkv). The other side streams through
// workgroup memory in tiles of COLS rows (two tiles at once: k and v, or q and dout), loaded with
// coalesced vec4 reads. Per tile: each lane forms partial dot products over its columns (`part`), the
// lanes of a row reduce them, each lane reducing columns c = l (mod TPR), into per-(row, column) weights
// (`w`), then every lane adds the weighted tile rows into its register accumulators.
// Under causal masking, fwd/dq stop at the block's last query and dkdv starts at its first key's tile.
// attn_bwd_prep: 1-D, 64 invocations per workgroup over n = B*Hq*T rows (`row` invocations per grid row).
//
// Loops over the rows of a tile run to the uniform `cols` (= COLS), not to the constant: with a constant
// bound lavapipe's LLVM unrolls them all, and a dK/dV pipeline took over 30 s to compile instead of ~1 s.
// Loops over a lane's OV registers have constant bounds, so they unroll and the slices stay in registers.
//
// Limits: ROWS, COLS, TPR, DH4, PARTS are override constants; OV (placeholder OV) is a define (function-scope
// arrays need a constant size) and must be >= ceil(DH4 / TPR). Workgroup memory:
// 16*2*COLS*DH4 + 4*PARTS*ROWS*COLS*(TPR + 1) (+ 8*COLS for dkdv) bytes; the caller picks block sizes
// that fit the device (Dh = 256 in 32 KiB: COLS = 8 in fwd and 4 in the backward, with ROWS = TPR = 16).
// Storage buffers per entry point: at most 8 (dkdv), WebGPU's default limit.

// (No commas in these comments: the runtime's params reader splits fields on them.)
struct Params {
  t: u32,         // sequence length T (queries and keys)
  hq: u32,        // query heads
  hkv: u32,       // key/value heads
  group: u32,     // hq / hkv: query heads per kv head
  causal: u32,    // 1: key j is visible to query i only when j <= i
  has_mask: u32,  // 1: `mask` holds the key-padding mask [B T]
  scale: f32,     // score scale (default 1 / sqrt(Dh))
  n: u32,         // attn_bwd_prep: rows B * Hq * T
  row: u32,       // attn_bwd_prep: invocations per grid row
  cols: u32,      // = COLS: loops over a tile's rows run to this run-time bound (see the header)
  q_sh: u32,      // q/out/dout/dq: vec4 stride of a head (T * DH4 in bhtd; DH4 in bthd)
  q_st: u32,      // q/out/dout/dq: vec4 stride of a token (DH4 in bhtd; Hq * DH4 in bthd)
  kv_sh: u32,     // k/v/dk/dv: vec4 stride of a head (T * DH4 in bhtd; DH4 in bthd)
  kv_st: u32,     // k/v/dk/dv: vec4 stride of a token (DH4 in bhtd; Hkv * DH4 in bthd)
}

@group(0) @binding(0) var<storage, read> q: array<vec4f>;
@group(0) @binding(1) var<storage, read> k: array<vec4f>;
@group(0) @binding(2) var<storage, read> v: array<vec4f>;
@group(0) @binding(3) var<storage, read> mask: array<f32>;
@group(0) @binding(4) var<storage, read> dout: array<vec4f>;
@group(0) @binding(5) var<storage, read> stats: array<vec2f>;
@group(0) @binding(6) var<storage, read_write> out: array<vec4f>;
@group(0) @binding(7) var<storage, read_write> lse: array<f32>;
@group(0) @binding(8) var<storage, read_write> stats_w: array<vec2f>;
@group(0) @binding(9) var<storage, read_write> dq: array<vec4f>;
@group(0) @binding(10) var<storage, read_write> dk: array<vec4f>;
@group(0) @binding(11) var<storage, read_write> dv: array<vec4f>;
@group(1) @binding(0) var<uniform> p: Params;

override ROWS: u32 = 16u;  // resident rows per workgroup
override COLS: u32 = 16u;  // streamed rows per tile
override TPR: u32 = 4u;    // lanes per resident row
override DH4: u32 = 16u;   // head dim / 4
override PARTS: u32 = 2u;  // dot products formed per (row, column): 1 in fwd (scores), 2 in backward
override WG: u32 = ROWS * TPR;

const OV: u32 = {{OV:1}}u;
/**
 * The weight in `w` of an invisible pair (its score in the forward, its P and dS in the backward): a running max
 * starts from it, and accumulate skips it; never exponentiated, so arithmetic stays finite. (A visible weight of
 * exactly -1e30 would be taken for it: far outside any softmax's range.)
 */
const MASKED: f32 = -1.0e30;
/** lse of a row with no visible key: exp(score - LSE_NONE) is 0. */
const LSE_NONE: f32 = 1.0e30;

/** A weight is MASKED, by its bits: a NaN stays visible (NaN > MASKED would be false). */
fn is_masked(x: f32) -> bool {
  return bitcast<u32>(x) == bitcast<u32>(MASKED);
}

alias Slice = array<vec4f, OV>;

var<workgroup> tile: array<vec4f, 2u * COLS * DH4>;             // two streamed tiles: [k | v] or [q | dout]
var<workgroup> part: array<f32, PARTS * COLS * ROWS * TPR>;     // [which][col][row][lane] partial dots
var<workgroup> w: array<f32, PARTS * ROWS * COLS>;              // [which][row][col] reduced weights
var<workgroup> col_stats: array<vec2f, COLS>;                   // dkdv: (lse, D) of the tile's queries

/** vec4 offset of query-side row (batch b, head h, token i): q, out, dout, dq. */
fn q_row(b: u32, h: u32, i: u32) -> u32 {
  return b * p.hq * p.t * DH4 + h * p.q_sh + i * p.q_st;
}

/** vec4 offset of key-side row (batch b, kv head h, token j): k, v, dk, dv. */
fn kv_row(b: u32, h: u32, j: u32) -> u32 {
  return b * p.hkv * p.t * DH4 + h * p.kv_sh + j * p.kv_st;
}

fn visible(b: u32, i: u32, j: u32) -> bool {
  if (i >= p.t || j >= p.t || (p.causal != 0u && j > i)) {
    return false;
  }
  return p.has_mask == 0u || nonzero(mask[b * p.t + j]); // on the bits: a NaN mask value keeps the key (NaN != 0)
}

/** Lane l's columns of the row at vec4 offset `base` (zeros when !ok). */
fn load_slice(src: ptr<storage, array<vec4f>, read>, base: u32, l: u32, ok: bool) -> Slice {
  var x: Slice;
  for (var s = 0u; s < OV; s++) {
    let c = l + TPR * s;
    if (ok && c < DH4) {
      x[s] = (*src)[base + c];
    }
  }
  return x;
}

/** Store lane l's columns (times `f`) of the row at vec4 offset `base`. */
fn store_slice(dst: ptr<storage, array<vec4f>, read_write>, base: u32, l: u32, x: Slice, f: f32) {
  for (var s = 0u; s < OV; s++) {
    let c = l + TPR * s;
    if (c < DH4) {
      (*dst)[base + c] = x[s] * f;
    }
  }
}

/**
 * Rows r0 .. r0+COLS of the head whose row 0 is at vec4 offset `head`, rows `stride` vec4 apart, into tile half
 * `half` (zeros past T).
 */
fn load_tile(src: ptr<storage, array<vec4f>, read>, head: u32, stride: u32, r0: u32, half: u32, lid: u32) {
  let n = COLS * DH4;
  let avail = min(COLS, p.t - r0) * DH4;
  for (var x = lid; x < n; x += WG) {
    var val = vec4f(0.0);
    if (x < avail) {
      let rr = x / DH4;
      val = (*src)[head + (r0 + rr) * stride + (x - rr * DH4)];
    }
    tile[half * n + x] = val;
  }
}

/** part[which][c][r][l] = lane l's share of x . tile[half][c], for every tile row c. */
fn partial_dots(x: Slice, half: u32, which: u32, r: u32, l: u32) {
  for (var c = 0u; c < p.cols; c++) {
    let row = (half * COLS + c) * DH4;
    var acc = 0.0;
    for (var s = 0u; s < OV; s++) {
      let col = l + TPR * s;
      if (col < DH4) {
        acc += dot(x[s], tile[row + col]);
      }
    }
    part[((which * COLS + c) * ROWS + r) * TPR + l] = acc;
  }
}

/** The full dot product of resident row r with tile row c: the sum of its lanes' partials. */
fn reduced(which: u32, c: u32, r: u32) -> f32 {
  var acc = 0.0;
  for (var l = 0u; l < TPR; l++) {
    acc += part[((which * COLS + c) * ROWS + r) * TPR + l];
  }
  return acc;
}

/**
 * acc += sum_c weight_c * tile[half][c] over lane l's columns, weight_c = w[which][r][c], or when `softmax`
 * exp(w - shift); a MASKED weight (an invisible pair) adds nothing, not even 0 times a NaN of the tile row.
 * Returns the sum of the weights (NaN when a visible one is).
 */
fn accumulate(acc: ptr<function, Slice>, which: u32, half: u32, r: u32, l: u32, softmax: bool, shift: f32) -> f32 {
  var total = 0.0;
  for (var c = 0u; c < p.cols; c++) {
    var wt = w[(which * ROWS + r) * COLS + c];
    if (is_masked(wt)) {
      continue;
    }
    if (softmax) {
      wt = exp(wt - shift);
    }
    total += wt;
    let row = (half * COLS + c) * DH4;
    for (var s = 0u; s < OV; s++) {
      let col = l + TPR * s;
      if (col < DH4) {
        (*acc)[s] += wt * tile[row + col];
      }
    }
  }
  return total;
}

/** One past the last key a block of queries starting at i0 can see (workgroup-uniform). */
fn key_end(i0: u32) -> u32 {
  return select(p.t, min(p.t, i0 + ROWS), p.causal != 0u);
}

@compute @workgroup_size(WG)
fn attn_fwd(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = lid / TPR;
  let l = lid % TPR;
  let bh = wid.y;
  let b = bh / p.hq;
  let kv_head = kv_row(b, (bh % p.hq) / p.group, 0u);
  let i0 = wid.x * ROWS;
  let i = i0 + r;
  let qr = q_row(b, bh % p.hq, i);
  let qx = load_slice(&q, qr, l, i < p.t);
  var o: Slice;
  var m = MASKED;   // running max of the visible scores
  var sum = 0.0;    // running sum of exp(score - m)
  for (var j0 = 0u; j0 < key_end(i0); j0 += COLS) {
    workgroupBarrier(); // the previous tile is consumed
    load_tile(&k, kv_head, p.kv_st, j0, 0u, lid);
    load_tile(&v, kv_head, p.kv_st, j0, 1u, lid);
    workgroupBarrier();
    partial_dots(qx, 0u, 0u, r, l);
    workgroupBarrier();
    for (var c = l; c < p.cols; c += TPR) {
      w[r * COLS + c] = select(MASKED, reduced(0u, c, r) * p.scale, visible(b, i, j0 + c));
    }
    workgroupBarrier();
    var m_new = m;
    for (var c = 0u; c < p.cols; c++) {
      m_new = max(m_new, w[r * COLS + c]);
    }
    let alpha = exp(m - m_new); // 0 when m was MASKED and a key is now visible; 1 while none is
    for (var s = 0u; s < OV; s++) {
      o[s] *= alpha;
    }
    sum = sum * alpha + accumulate(&o, 0u, 1u, r, l, true, m_new);
    m = m_new;
  }
  if (i < p.t) {
    let any = nonzero(sum); // some key is visible (sum >= 1), or the row is NaN
    store_slice(&out, qr, l, o, select(0.0, 1.0 / sum, any));
    if (l == 0u) {
      lse[bh * p.t + i] = select(LSE_NONE, m + log(sum), any);
    }
  }
}

@compute @workgroup_size(64)
fn attn_bwd_prep(@builtin(global_invocation_id) gid: vec3u) {
  let x = gid.y * p.row + gid.x;
  if (x >= p.n) {
    return;
  }
  let qr = q_row(x / (p.hq * p.t), (x / p.t) % p.hq, x % p.t); // x = (b * Hq + h) * T + i
  var d = 0.0;
  for (var c = 0u; c < DH4; c++) {
    d += dot(dout[qr + c], out[qr + c]);
  }
  stats_w[x] = vec2f(lse[x], d);
}

@compute @workgroup_size(WG)
fn attn_bwd_dq(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = lid / TPR;
  let l = lid % TPR;
  let bh = wid.y;
  let b = bh / p.hq;
  let kv_head = kv_row(b, (bh % p.hq) / p.group, 0u);
  let i0 = wid.x * ROWS;
  let i = i0 + r;
  let ok = i < p.t;
  let qr = q_row(b, bh % p.hq, i);
  let qx = load_slice(&q, qr, l, ok);
  let gx = load_slice(&dout, qr, l, ok);
  var st = vec2f(LSE_NONE, 0.0);
  if (ok) {
    st = stats[bh * p.t + i];
  }
  var acc: Slice;
  for (var j0 = 0u; j0 < key_end(i0); j0 += COLS) {
    workgroupBarrier();
    load_tile(&k, kv_head, p.kv_st, j0, 0u, lid);
    load_tile(&v, kv_head, p.kv_st, j0, 1u, lid);
    workgroupBarrier();
    partial_dots(qx, 0u, 0u, r, l); // q . k_j
    partial_dots(gx, 1u, 1u, r, l); // dout . v_j
    workgroupBarrier();
    for (var c = l; c < p.cols; c += TPR) {
      var ds = MASKED; // invisible: adds nothing
      if (visible(b, i, j0 + c)) {
        ds = exp(reduced(0u, c, r) * p.scale - st.x) * (reduced(1u, c, r) - st.y);
      }
      w[r * COLS + c] = ds;
    }
    workgroupBarrier();
    accumulate(&acc, 0u, 0u, r, l, false, 0.0); // += dS k_j
  }
  if (ok) {
    store_slice(&dq, qr, l, acc, p.scale);
  }
}

@compute @workgroup_size(WG)
fn attn_bwd_dkdv(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = lid / TPR;
  let l = lid % TPR;
  let bkv = wid.y;
  let b = bkv / p.hkv;
  let j0 = wid.x * ROWS;
  let j = j0 + r;
  let ok = j < p.t;
  let kr = kv_row(b, bkv % p.hkv, j);
  let kx = load_slice(&k, kr, l, ok);
  let vx = load_slice(&v, kr, l, ok);
  var dk_acc: Slice;
  var dv_acc: Slice;
  // Under causal masking no query before this block's first key sees it.
  let first = select(0u, (j0 / COLS) * COLS, p.causal != 0u);
  for (var g = 0u; g < p.group; g++) {
    let bh = b * p.hq + (bkv % p.hkv) * p.group + g;
    let q_head = q_row(b, bh % p.hq, 0u);
    for (var i0 = first; i0 < p.t; i0 += COLS) {
      workgroupBarrier();
      load_tile(&q, q_head, p.q_st, i0, 0u, lid);
      load_tile(&dout, q_head, p.q_st, i0, 1u, lid);
      for (var c = lid; c < COLS; c += WG) {
        col_stats[c] = select(vec2f(LSE_NONE, 0.0), stats[bh * p.t + min(i0 + c, p.t - 1u)], i0 + c < p.t);
      }
      workgroupBarrier();
      partial_dots(kx, 0u, 0u, r, l); // k_j . q_i
      partial_dots(vx, 1u, 1u, r, l); // v_j . dout_i
      workgroupBarrier();
      for (var c = l; c < p.cols; c += TPR) {
        var pr = MASKED; // invisible: adds nothing
        var ds = MASKED;
        if (visible(b, i0 + c, j)) {
          let st = col_stats[c];
          pr = exp(reduced(0u, c, r) * p.scale - st.x);
          ds = pr * (reduced(1u, c, r) - st.y);
        }
        w[r * COLS + c] = pr;
        w[(ROWS + r) * COLS + c] = ds;
      }
      workgroupBarrier();
      accumulate(&dv_acc, 0u, 1u, r, l, false, 0.0); // += P dout_i
      accumulate(&dk_acc, 1u, 0u, r, l, false, 0.0); // += dS q_i
    }
  }
  if (ok) {
    store_slice(&dk, kr, l, dk_acc, p.scale);
    store_slice(&dv, kr, l, dv_acc, 1.0);
  }
}
