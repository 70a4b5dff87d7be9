// Matrix products for the tensor ops (src/tensor/ops/matmul.ts): per batch z,
//   C[z] = op(A[z]) · op(B[z]) (+ bias),   op(A) is [M, K], op(B) is [K, N], C is [M, N], all row-major.
// Element types: each of A, B, bias and C is f32 or IEEE half, independently (X_T, BIAS_T, C_T name them;
// the loads convert to f32, so every product accumulates in f32, and C_ST rounds once when it stores).
//
// Layout. Each operand is addressed through its "outer" dimension (m for A, n for B) and k: element (o, k)
// of operand X sits at X[off + o * SO + k * SK], where X_KC says whether X is contiguous along k:
//   A  (not transposed, stored [M, K]) KC: SO = K, SK = 1     A  (transposed, stored [K, M]): SO = 1, SK = M
//   B  (not transposed, stored [K, N])   : SO = 1, SK = N     B  (transposed, stored [N, K]) KC: SO = K, SK = 1
// so NN, NT, TN and TT are one source; no transposed copy is ever made. X_T is the binding's element type:
// a vec4 of the element type when the contiguous dimension is a multiple of 4 (then 4 elements along it load
// as one vec4), else a scalar; X_LD (one element at flat index i) and X_LD4 (4 consecutive elements from i)
// read either and return f32 / vec4<f32>.
// Batch z (batch0 + workgroup z) starts at A[z * sA], B[z * sB], C[z * M * N]; a stride of 0 shares the
// operand across the batch (a 2-D weight). bias (BIAS: `bias[n]` or `0.0`) adds one value per column.
// C_T / C_ST: vec4 stores when N % 4 == 0, else per-column scalar stores of the valid columns.
//
// Entry points (the same result; src/tensor/ops/matmul.ts picks one per adapter):
//   matmul        register-blocked, no workgroup memory (barriers are costly on CPU Vulkan drivers). One
//                 invocation computes a TM x 4 block of C (TM rows, one vec4 of columns), stepping k by 4:
//                 each step loads a TM x 4 tile of A and a 4 x 4 tile of B (as vec4s where the layout
//                 allows) and does 16 * TM FMAs; a scalar tail covers K % 4. Workgroup WG_X x WG_Y
//                 (overrides, default 8 x 8) covers 4*WG_X columns x TM*WG_Y rows; dispatch
//                 [ceil(N / (4 * WG_X)), ceil(M / (TM * WG_Y)), batches].
//   matmul_tiled  workgroup-memory tiling for real GPUs: a 16 x 16 workgroup computes a 64 x 64 block of C,
//                 each invocation 4 x 4; per step of BK = 16 along k, the workgroup stages a 64 x 16 tile
//                 of each operand (4 elements per invocation, consecutive invocations on consecutive
//                 addresses; k >= K staged as 0), then each invocation reads one vec4 of A and B per k
//                 (the caller sets TM = 4 for it).
//                 Dispatch [ceil(N / 64), ceil(M / 64), batches].
// Edges: rows/columns past M/N read clamped (in-bounds) addresses and are never stored; any M, N, K >= 0
// work (K = 0 gives zeros, or the bias). Limits: every index below 2^32; batches per dispatch <= 65535
// (the caller splits larger batches with batch0).

struct Params {
  M: u32,
  N: u32,
  K: u32,
  sA: u32,
  sB: u32,
  batch0: u32,
}

@group(0) @binding(0) var<storage, read> a: array<{{A_T}}>;
@group(0) @binding(1) var<storage, read> b: array<{{B_T}}>;
@group(0) @binding(2) var<storage, read> bias: array<{{BIAS_T:f32}}>;
@group(0) @binding(3) var<storage, read_write> c: array<{{C_T}}>;
@group(1) @binding(0) var<uniform> p: Params;

const TM: u32 = {{TM:4}}u;
const A_KC: bool = {{A_KC}};
const B_KC: bool = {{B_KC}};
const A_VEC: bool = {{A_VEC}};
const B_VEC: bool = {{B_VEC}};

fn ldA(i: u32) -> f32 { return {{A_LD}}; }
fn ldA4(i: u32) -> vec4<f32> { return {{A_LD4}}; }
fn ldB(i: u32) -> f32 { return {{B_LD}}; }
fn ldB4(i: u32) -> vec4<f32> { return {{B_LD4}}; }
fn biasAt(n: u32) -> f32 { return {{BIAS:0.0}}; }
// Store row values v (4 columns from flat index i, `cols` of them inside C).
fn stC(i: u32, v: vec4<f32>, cols: u32) { {{C_ST}} }

// Operand X (0 = A, 1 = B): one element / 4 consecutive elements at a flat index.
fn ld(x: u32, i: u32) -> f32 {
  if (x == 0u) {
    return ldA(i);
  }
  return ldB(i);
}
fn ld4(x: u32, i: u32) -> vec4<f32> {
  if (x == 0u) {
    return ldA4(i);
  }
  return ldB4(i);
}

// Outer size, contiguity and strides of operand x.
fn outer(x: u32) -> u32 { return select(p.N, p.M, x == 0u); }
fn kc(x: u32) -> bool { return select(B_KC, A_KC, x == 0u); }
fn isVec(x: u32) -> bool { return select(B_VEC, A_VEC, x == 0u); }
fn so(x: u32) -> u32 { return select(1u, p.K, kc(x)); }
fn sk(x: u32) -> u32 { return select(outer(x), 1u, kc(x)); }

// Flat index of element (o, 0) of operand x in batch z, with o clamped inside the operand.
fn rowBase(x: u32, z: u32, o: u32) -> u32 {
  let off = z * select(p.sB, p.sA, x == 0u);
  return off + min(o, outer(x) - 1u) * so(x);
}

// Rows o0..o0+3 of operand x at k..k+3 (k + 3 < K): q[r] = X[o0 + r, k .. k + 3].
fn quad(x: u32, base: vec4<u32>, k: u32) -> mat4x4<f32> {
  if (isVec(x) && kc(x)) {
    return mat4x4<f32>(ld4(x, base[0] + k), ld4(x, base[1] + k), ld4(x, base[2] + k), ld4(x, base[3] + k));
  }
  let s = sk(x);
  if (isVec(x)) {
    // Contiguous along the outer dimension: column j of the loaded matrix is X[o0 .. o0 + 3, k + j].
    let i = base[0] + k * s;
    return transpose(mat4x4<f32>(ld4(x, i), ld4(x, i + s), ld4(x, i + 2u * s), ld4(x, i + 3u * s)));
  }
  var q: mat4x4<f32>;
  for (var r = 0u; r < 4u; r++) {
    let i = base[r] + k * s;
    q[r] = vec4<f32>(ld(x, i), ld(x, i + s), ld(x, i + 2u * s), ld(x, i + 3u * s));
  }
  return q;
}

// Write rows m0.. of a block (acc[r] = C[m0 + r, n0 .. n0 + 3]) plus bias, inside C only.
fn store(z: u32, m0: u32, n0: u32, acc: ptr<function, array<vec4<f32>, TM>>, rows: u32) {
  if (n0 >= p.N) {
    return;
  }
  let cols = min(4u, p.N - n0);
  let bv = vec4<f32>(biasAt(n0), biasAt(min(n0 + 1u, p.N - 1u)), biasAt(min(n0 + 2u, p.N - 1u)), biasAt(min(n0 + 3u, p.N - 1u)));
  for (var r = 0u; r < rows; r++) {
    if (m0 + r < p.M) {
      stC(z * p.M * p.N + (m0 + r) * p.N + n0, (*acc)[r] + bv, cols);
    }
  }
}

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;

@compute @workgroup_size(WG_X, WG_Y)
fn matmul(@builtin(global_invocation_id) g: vec3u) {
  let z = p.batch0 + g.z;
  let n0 = g.x * 4u;
  let m0 = g.y * TM;
  if (n0 >= p.N || m0 >= p.M) {
    return;
  }
  var ab: array<vec4<u32>, TM / 4u>;
  for (var t = 0u; t < TM / 4u; t++) {
    let o = m0 + 4u * t;
    ab[t] = vec4<u32>(rowBase(0u, z, o), rowBase(0u, z, o + 1u), rowBase(0u, z, o + 2u), rowBase(0u, z, o + 3u));
  }
  let bb = vec4<u32>(rowBase(1u, z, n0), rowBase(1u, z, n0 + 1u), rowBase(1u, z, n0 + 2u), rowBase(1u, z, n0 + 3u));
  var acc: array<vec4<f32>, TM>;
  let kMain = p.K & ~3u;
  for (var k = 0u; k < kMain; k += 4u) {
    let bq = quad(1u, bb, k); // bq[c] = B[k .. k + 3, n0 + c]
    for (var t = 0u; t < TM / 4u; t++) {
      let aq = quad(0u, ab[t], k);
      for (var r = 0u; r < 4u; r++) {
        acc[4u * t + r] += aq[r] * bq; // row vector times matrix: (dot(aq[r], bq[c]))_c
      }
    }
  }
  let ska = sk(0u);
  let skb = sk(1u);
  for (var k = kMain; k < p.K; k++) {
    let bv = vec4<f32>(ld(1u, bb[0] + k * skb), ld(1u, bb[1] + k * skb), ld(1u, bb[2] + k * skb), ld(1u, bb[3] + k * skb));
    for (var r = 0u; r < TM; r++) {
      acc[r] = fma(vec4<f32>(ld(0u, ab[r / 4u][r % 4u] + k * ska)), bv, acc[r]);
    }
  }
  store(z, m0, n0, &acc, TM);
}

// ---- matmul_tiled --------------------------------------------------------------------------------------

const BK: u32 = 16u;
const BT: u32 = 64u; // block rows (and columns) per workgroup
// Staged tiles, k-major: element (o, kk) of operand x's tile at tiles[x * TILE + kk * ROW + o / 4][o % 4]
// (one vec4 holds 4 rows of A, or 4 columns of B). ROW is padded by one vec4 so that staging a k-contiguous
// operand (consecutive invocations on consecutive kk) spreads its writes over the memory banks.
const ROW: u32 = BT / 4u + 1u;
const TILE: u32 = BK * ROW;
var<workgroup> tiles: array<vec4<f32>, 2u * TILE>;

// Stage the 64 x BK tile of operand x (outer rows o0.., k0..) into tiles, 4 elements per invocation.
fn stage(x: u32, z: u32, o0: u32, k0: u32, lid: u32) {
  for (var e = lid; e < BT * BK; e += 256u) {
    // Consecutive invocations read consecutive addresses along the operand's contiguous dimension.
    let o = select(e % BT, e / BK, kc(x));
    let kk = select(e / BT, e % BK, kc(x));
    var v = 0.0;
    if (k0 + kk < p.K) {
      v = ld(x, rowBase(x, z, o0 + o) + (k0 + kk) * sk(x));
    }
    tiles[x * TILE + kk * ROW + o / 4u][o % 4u] = v;
  }
}

@compute @workgroup_size(16, 16)
fn matmul_tiled(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u, @builtin(local_invocation_index) lid: u32) {
  let z = p.batch0 + wg.z;
  let mb = wg.y * BT;
  let nb = wg.x * BT;
  var acc: array<vec4<f32>, TM>;
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    stage(0u, z, mb, k0, lid);
    stage(1u, z, nb, k0, lid);
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      let av = tiles[kk * ROW + l.y];
      let bv = tiles[TILE + kk * ROW + l.x];
      for (var r = 0u; r < 4u; r++) {
        acc[r] = fma(vec4<f32>(av[r]), bv, acc[r]);
      }
    }
    workgroupBarrier();
  }
  store(z, mb + 4u * l.y, nb + 4u * l.x, &acc, 4u);
}
