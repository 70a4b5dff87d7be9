// Matrix products for the tensor ops (src/tensor/ops/matmul.ts): the entry points that need no device
// feature. Layouts, loads, bias and stores: kernels/matmul_common.wgsl (appended to this file).
//
// Entry points (the same result; src/tensor/ops/matmul.ts picks one per adapter; matmul_sg is in
// kernels/matmul_subgroup.wgsl):
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
//   matmul_tiled128  the same with 128 x 128 blocks, 8 x 8 outputs per invocation and BK = 8 (TM = 8):
//                 twice the FMAs per workgroup-memory read; the autotuner decides which fits a GPU better.
// Edges: rows/columns past M/N read clamped (in-bounds) addresses and are never stored; any M, N, K >= 0
// work (K = 0 gives zeros, or the bias). Limits: every index below 2^32; batches per dispatch <= 65535
// (the caller splits larger batches with batch0).

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
    ab[t] = rowBases(0u, z, m0 + 4u * t);
  }
  let bb = rowBases(1u, z, n0);
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
  for (var k = kMain; k < p.K; k++) {
    let bv = at4(1u, bb, k);
    for (var r = 0u; r < TM; r++) {
      acc[r] = fma(vec4<f32>(ld(0u, ab[r / 4u][r % 4u] + k * ska)), bv, acc[r]);
    }
  }
  store(z, m0, n0, &acc, TM);
}

// ---- matmul_tiled, matmul_tiled128 ------------------------------------------------------------------------

const BK: u32 = 16u;
const BT: u32 = 64u; // block rows (and columns) per workgroup
const BK2: u32 = 8u; // matmul_tiled128
const BT2: u32 = 128u;
// Staged tiles, k-major: element (o, kk) of operand x's bt x bk tile at tiles[x * bk * row + kk * row + o / 4]
// [o % 4] with row = bt / 4 + 1 (one vec4 holds 4 rows of A, or 4 columns of B). The row is padded by one vec4
// so that staging a k-contiguous operand (consecutive invocations on consecutive kk) spreads its writes over
// the memory banks. Both tile shapes fit one array (2 * 16 * 17 and 2 * 8 * 33 vec4s).
const ROW: u32 = BT / 4u + 1u;
const TILE: u32 = BK * ROW;
const ROW2: u32 = BT2 / 4u + 1u;
const TILE2: u32 = BK2 * ROW2;
var<workgroup> tiles: array<vec4<f32>, 2u * max(TILE, TILE2)>;

// Stage the bt x bk tile of operand x (outer rows o0.., k0..) into tiles; 256 invocations share the work.
fn stage(x: u32, z: u32, o0: u32, k0: u32, lid: u32, bt: u32, bk: u32) {
  let row = bt / 4u + 1u;
  for (var e = lid; e < bt * bk; e += 256u) {
    // Consecutive invocations read consecutive addresses along the operand's contiguous dimension.
    let o = select(e % bt, e / bk, kc(x));
    let kk = select(e / bt, e % bk, kc(x));
    var v = 0.0;
    if (k0 + kk < p.K) {
      v = ld(x, rowBase(x, z, o0 + o) + (k0 + kk) * sk(x));
    }
    tiles[x * bk * row + kk * row + o / 4u][o % 4u] = v;
  }
}

@compute @workgroup_size(16, 16)
fn matmul_tiled(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u, @builtin(local_invocation_index) lid: u32) {
  let z = p.batch0 + wg.z;
  let mb = wg.y * BT;
  let nb = wg.x * BT;
  var acc: array<vec4<f32>, TM>;
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    stage(0u, z, mb, k0, lid, BT, BK);
    stage(1u, z, nb, k0, lid, BT, BK);
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

// The classic GPU SGEMM shape: a 16 x 16 workgroup computes a 128 x 128 block, each invocation an 8 x 8 block
// (rows 8 ty .., columns 8 tx ..) in 16 vec4 registers, from 4 vec4 workgroup-memory reads per 64 FMAs;
// steps of BK2 = 8 along k. The caller sets TM = 8. Dispatch [ceil(N / 128), ceil(M / 128), batches].
@compute @workgroup_size(16, 16)
fn matmul_tiled128(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u, @builtin(local_invocation_index) lid: u32) {
  let z = p.batch0 + wg.z;
  let mb = wg.y * BT2;
  let nb = wg.x * BT2;
  var left: array<vec4<f32>, TM>;  // columns 8 tx .. 8 tx + 3 of rows 8 ty + r
  var right: array<vec4<f32>, TM>; // columns 8 tx + 4 .. 8 tx + 7
  for (var k0 = 0u; k0 < p.K; k0 += BK2) {
    stage(0u, z, mb, k0, lid, BT2, BK2);
    stage(1u, z, nb, k0, lid, BT2, BK2);
    workgroupBarrier();
    for (var kk = 0u; kk < BK2; kk++) {
      let a0 = tiles[kk * ROW2 + 2u * l.y];
      let a1 = tiles[kk * ROW2 + 2u * l.y + 1u];
      let b0 = tiles[TILE2 + kk * ROW2 + 2u * l.x];
      let b1 = tiles[TILE2 + kk * ROW2 + 2u * l.x + 1u];
      for (var r = 0u; r < 4u; r++) {
        left[r] = fma(vec4<f32>(a0[r]), b0, left[r]);
        right[r] = fma(vec4<f32>(a0[r]), b1, right[r]);
        left[r + 4u] = fma(vec4<f32>(a1[r]), b0, left[r + 4u]);
        right[r + 4u] = fma(vec4<f32>(a1[r]), b1, right[r + 4u]);
      }
    }
    workgroupBarrier();
  }
  store(z, mb + 8u * l.y, nb + 8u * l.x, &left, 8u);
  store(z, mb + 8u * l.y, nb + 8u * l.x + 4u, &right, 8u);
}
