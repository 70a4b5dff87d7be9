// Decode attention over a key/value cache, forward only (src/tensor/ops/attention_decode.ts).
//
//   out[b,h,i,:] = sum_j P[i,j] v[b,kvh,j,:],  P = softmax_j(scale * q[b,h,i,:] . k[b,kvh,j,:] over visible j)
//
// for Tq new queries per head at cache slots offset .. offset+Tq-1, against the first Tk rows of caches
// allocated with S >= Tk rows per kv head. kvh = h / group (grouped-query attention, group = Hq / Hkv).
// visible(i, j) = j < Tk, (!causal or j <= offset + i), and (no mask or mask[b, j] != 0) (key padding, HF's
// attention_mask: 1 keep, 0 pad). A query row with no visible key gets out = 0. A NaN among a row's visible
// scores (or in a visible value row) makes its out NaN, as in torch; invisible keys take no part (see
// kernels/attention.wgsl: MASKED and the sums are tested on the bits, kernels/nan.wgsl appended; a split's NaN
// reaches the combined output through its sum).
//
//   decode_attn     one pass over a split's keys with an online softmax. With splits = 1 it writes `out`
//                   (o_part bound to the output) normalized; otherwise the split's unnormalized o and its
//                   (max, sum of exp) into o_part / ml_part for decode_combine.
//   decode_combine  out = sum_s o_s exp(m_s - m) / sum_s l_s exp(m_s - m), m = max_s m_s (flash-decoding).
//
// Layout: q, out [B, Hq, Tq, Dh]; k, v [B, Hkv, S, Dh] (only rows < Tk are read); mask [B, mask_stride]
// (read only when has_mask; the caller binds some other buffer otherwise); o_part [splits, NR, Dh] and
// ml_part [splits, NR] of vec2 (max, sum), NR = B * Hq * Tq query rows. All contiguous f32; Dh = 4 * DH4.
// The query rows of one kv head are contiguous: the group heads' Tq rows each, rr = g * Tq + i in
// 0 .. rows-1 (rows = group * Tq) at flat row (b * Hkv + kvh) * rows + rr. So one workgroup serves every
// query head sharing a kv head and reads that head's keys and values once (the GQA saving of decode).
//
// Launch geometry (decode_attn): wid.x = block of ROWS query rows of one kv head, wid.y = b * Hkv + kvh,
// wid.z = split (keys split * chunk .. split * chunk + chunk - 1). WG = ROWS * TPR invocations: TPR lanes
// per query row, lane l owning head-dim vec4 columns l, l + TPR, ... (OV = ceil(DH4 / TPR) registers per
// row vector). Keys and values stream through workgroup memory in tiles of COLS rows with coalesced vec4
// reads; per tile each lane forms partial dot products over its columns (`part`), the lanes of a row
// reduce them (lane l reduces the tile rows c = l mod TPR) into scores (`w`), then every lane adds the
// weighted value rows into its registers. Split-K over the keys gives the GPU enough workgroups when
// B * Hkv is small and the cache long; the host picks `splits` (and chunk, a multiple of COLS).
// decode_combine: 1-D, 64 invocations per workgroup over n = NR * DH4 (one vec4 of one row each; `row`
// invocations per grid row).
//
// As in kernels/attention.wgsl, loops over a tile's rows run to the uniform `cols` (= COLS) so lavapipe's
// LLVM does not unroll them, and loops over a lane's OV registers have constant bounds.
//
// Limits: ROWS, COLS, TPR, DH4 are override constants; OV (placeholder) must be >= ceil(DH4 / TPR).
// Workgroup memory 16*2*COLS*DH4 + 4*COLS*ROWS*TPR + 4*ROWS*COLS bytes; the caller picks sizes that fit.

// (No commas in these comments: the runtime's params reader splits fields on them.)
struct Params {
  tq: u32,           // queries per head Tq
  tk: u32,           // valid keys Tk
  s: u32,            // key rows allocated per kv head S (row stride of a k/v head is S * Dh)
  offset: u32,       // cache slot of query 0
  hkv: u32,          // key/value heads
  rows: u32,         // group * Tq: query rows per kv head
  causal: u32,       // 1: query i sees key j only when j <= offset + i
  has_mask: u32,     // 1: `mask` holds the key-padding mask
  mask_stride: u32,  // elements per batch row of the mask (>= Tk)
  scale: f32,        // score scale
  chunk: u32,        // keys per split
  splits: u32,       // number of key splits (1: decode_attn writes the normalized output)
  nr: u32,           // B * Hq * Tq: query rows in all
  n: u32,            // decode_combine: NR * DH4
  row: u32,          // decode_combine: invocations per grid row
  cols: u32,         // = COLS (see the header)
}

@group(0) @binding(0) var<storage, read> q: array<vec4f>;
@group(0) @binding(1) var<storage, read> k: array<vec4f>;
@group(0) @binding(2) var<storage, read> v: array<vec4f>;
@group(0) @binding(3) var<storage, read> mask: array<f32>;
@group(0) @binding(4) var<storage, read_write> o_part: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> ml_part: array<vec2f>;
@group(0) @binding(6) var<storage, read> po: array<vec4f>;
@group(0) @binding(7) var<storage, read> pml: array<vec2f>;
@group(0) @binding(8) var<storage, read_write> out: array<vec4f>;
@group(1) @binding(0) var<uniform> p: Params;

override ROWS: u32 = 4u;   // query rows per workgroup
override COLS: u32 = 16u;  // key rows per tile
override TPR: u32 = 16u;   // lanes per query row
override DH4: u32 = 16u;   // head dim / 4
override WG: u32 = ROWS * TPR;

const OV: u32 = {{OV:1}}u;
/** Score of an invisible key: a running max starts from it, the value loop skips it; never exponentiated. */
const MASKED: f32 = -1.0e30;

/** A score (or a split's max) is MASKED: its bits, so a NaN stays visible (NaN > MASKED is false). */
fn is_masked(x: f32) -> bool {
  return bitcast<u32>(x) == bitcast<u32>(MASKED);
}

alias Slice = array<vec4f, OV>;

var<workgroup> tile: array<vec4f, 2u * COLS * DH4>;   // [k | v] rows of the current tile
var<workgroup> part: array<f32, COLS * ROWS * TPR>;   // [col][row][lane] partial dots
var<workgroup> w: array<f32, ROWS * COLS>;            // [row][col] scaled scores (MASKED if invisible)

fn visible(b: u32, i: u32, j: u32, hi: u32) -> bool {
  if (j >= hi || (p.causal != 0u && j > p.offset + i)) {
    return false;
  }
  return p.has_mask == 0u || nonzero(mask[b * p.mask_stride + j]); // on the bits: NaN keeps the key (NaN != 0)
}

/** Keys j0 .. j0+COLS of the kv head at vec4 offset `head` into both tile halves (zeros from `hi` on). */
fn load_tiles(head: u32, j0: u32, hi: u32, lid: u32) {
  let n = COLS * DH4;
  let avail = min(COLS, hi - j0) * DH4;
  for (var x = lid; x < n; x += WG) {
    var kx = vec4f(0.0);
    var vx = vec4f(0.0);
    if (x < avail) {
      kx = k[head + j0 * DH4 + x];
      vx = v[head + j0 * DH4 + x];
    }
    tile[x] = kx;
    tile[n + x] = vx;
  }
}

@compute @workgroup_size(WG)
fn decode_attn(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = lid / TPR;
  let l = lid % TPR;
  let bkv = wid.y;
  let b = bkv / p.hkv;
  let rr = wid.x * ROWS + r;
  let ok = rr < p.rows;
  let i = rr % p.tq;                 // query index within its head
  let qr = bkv * p.rows + rr;        // flat query row [B Hq Tq]
  let head = bkv * p.s * DH4;        // the kv head's first key row
  var qx: Slice;
  for (var s = 0u; s < OV; s++) {
    let c = l + TPR * s;
    if (ok && c < DH4) {
      qx[s] = q[qr * DH4 + c];
    }
  }
  // This split's keys; under causal masking no query of the step sees past offset + Tq - 1.
  let lo = wid.z * p.chunk;
  var hi = min(p.tk, lo + p.chunk);
  if (p.causal != 0u) {
    hi = min(hi, p.offset + p.tq);
  }
  var o: Slice;
  var m = MASKED;   // running max of the visible scores
  var sum = 0.0;    // running sum of exp(score - m)
  for (var j0 = lo; j0 < hi; j0 += COLS) {
    workgroupBarrier(); // the previous tile is consumed
    load_tiles(head, j0, hi, lid);
    workgroupBarrier();
    for (var c = 0u; c < p.cols; c++) {
      var acc = 0.0;
      for (var s = 0u; s < OV; s++) {
        let col = l + TPR * s;
        if (col < DH4) {
          acc += dot(qx[s], tile[c * DH4 + col]);
        }
      }
      part[(c * ROWS + r) * TPR + l] = acc;
    }
    workgroupBarrier();
    for (var c = l; c < p.cols; c += TPR) {
      var dotv = 0.0;
      for (var x = 0u; x < TPR; x++) {
        dotv += part[(c * ROWS + r) * TPR + x];
      }
      w[r * COLS + c] = select(MASKED, dotv * p.scale, ok && visible(b, i, j0 + c, hi));
    }
    workgroupBarrier();
    var m_new = m;
    for (var c = 0u; c < p.cols; c++) {
      m_new = max(m_new, w[r * COLS + c]);
    }
    let alpha = exp(m - m_new); // 0 when m was MASKED and a key is now visible; 1 while none is
    sum *= alpha;
    for (var s = 0u; s < OV; s++) {
      o[s] *= alpha;
    }
    for (var c = 0u; c < p.cols; c++) {
      let sc = w[r * COLS + c];
      if (is_masked(sc)) {
        continue; // an invisible key adds nothing, not even 0 times a NaN of its value row
      }
      let e = exp(sc - m_new);
      sum += e;
      for (var s = 0u; s < OV; s++) {
        let col = l + TPR * s;
        if (col < DH4) {
          o[s] += e * tile[(COLS + c) * DH4 + col];
        }
      }
    }
    m = m_new;
  }
  if (!ok) {
    return;
  }
  // splits = 1: the normalized output (0 for a row that sees no key); else this split's share.
  let direct = p.splits == 1u;
  let f = select(1.0, select(0.0, 1.0 / sum, nonzero(sum)), direct); // sum >= 1, 0 (no key) or NaN
  let base = (wid.z * p.nr + qr) * DH4;
  for (var s = 0u; s < OV; s++) {
    let c = l + TPR * s;
    if (c < DH4) {
      o_part[base + c] = o[s] * f;
    }
  }
  if (l == 0u) {
    ml_part[wid.z * p.nr + qr] = vec2f(m, sum);
  }
}

@compute @workgroup_size(64)
fn decode_combine(@builtin(global_invocation_id) gid: vec3u) {
  let x = gid.y * p.row + gid.x;
  if (x >= p.n) {
    return;
  }
  let qr = x / DH4;
  var m = MASKED;
  for (var s = 0u; s < p.splits; s++) {
    m = max(m, pml[s * p.nr + qr].x);
  }
  var total = 0.0;
  var acc = vec4f(0.0);
  for (var s = 0u; s < p.splits; s++) {
    let ml = pml[s * p.nr + qr];
    let e = select(exp(ml.x - m), 0.0, is_masked(ml.x)); // a split that saw no key adds nothing
    total += ml.y * e;
    acc += po[s * p.nr * DH4 + x] * e;
  }
  out[x] = select(vec4f(0.0), acc / total, nonzero(total)); // total > 0, 0 (no key) or NaN
}
