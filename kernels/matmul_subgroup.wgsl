enable subgroups;
// Matrix products with subgroup broadcasts, for CPU Vulkan drivers with 8-wide subgroups (lavapipe). Same
// problem, layouts, loads, bias and stores as kernels/matmul_ops.wgsl: kernels/matmul_common.wgsl (appended
// to this file). src/tensor/ops/matmul.ts picks this entry only where the adapter's subgroup size is exactly
// 8 (subgroupMinSize = subgroupMaxSize = 8) and compiles it with TM = 16, or TM = 8 for products of at most 8
// rows (src/kernels/matmul.ts subgroupRows).
//
// Why: lavapipe runs a subgroup as the 8 lanes of one SIMD register, and it loads from a storage buffer one
// lane at a time (a bounds-checked scalar loop per lane and component), so on it a kernel's speed is set by
// how many elements each lane loads per FMA; arithmetic and register shuffles are cheap. Here the 8 lanes
// of a subgroup share 8 rows of A: each lane loads a different quarter-tile of A once, and the others get it
// through subgroupBroadcast (a register shuffle there) instead of loading it again.
//
//   matmul_sg     one workgroup = one subgroup of 8 lanes computes a TM x 32 block of C: lane l owns the
//                 4 columns n0 = 32 * wg.x + 4 * l .. n0 + 3 and all TM rows m0 = TM * wg.y .. m0 + TM - 1
//                 (TM vec4 accumulators), in groups h of 8 rows. Per step of 4 along k, each lane loads its
//                 4 x 4 tile of B and, per group, one vec4 of A (row m0 + 8 h + l, k .. k + 3 when A is
//                 contiguous along k; else rows m0 + 8 h + 4 (l % 2) .. + 3 at k + l / 2), broadcasts the
//                 group's 8 A vec4s and does 128 FMAs per group: with TM = 16, 6 vec4 loads per 256 FMAs
//                 (TM = 8: 5 per 128; the direct entry: 12 per 128). Dispatch [ceil(N / 32), ceil(M / TM),
//                 batches].
// Edges: every lane takes part in every broadcast (no early return: subgroup operations need uniform
// control flow), loading clamped in-bounds addresses; only rows < M and columns < N are stored. K % 4 is a
// scalar tail with one broadcast per row.

const SG: u32 = 8u;

// Every lane's value of v: lanes[l] = v on lane l (lane ids must be constants).
fn lanes8(v: vec4<f32>) -> array<vec4<f32>, SG> {
  return array<vec4<f32>, SG>(
    subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u),
    subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u));
}

// A is loaded transposed-tile-wise when it is contiguous along m in vec4s (A stored [K, M], M % 4 == 0).
const A_ROWS_VEC: bool = A_VEC && !A_KC;

@compute @workgroup_size(SG)
fn matmul_sg(@builtin(workgroup_id) wg: vec3u, @builtin(subgroup_invocation_id) lane: u32) {
  let z = p.batch0 + wg.z;
  let m0 = wg.y * TM;
  let n0 = (wg.x * SG + lane) * 4u;
  // Lanes past the last column load in-bounds columns (a vec4 of B along n must start at N - 4 or before).
  let nl = select(n0, min(n0, max(p.N, 4u) - 4u), B_VEC && !B_KC);
  let bb = rowBases(1u, z, nl);
  let ska = sk(0u);
  // Per group h of 8 rows (m0 + 8 h ..): this lane's row of A (k-contiguous layouts and the K tail), or its
  // 4-row, 1-k piece (A_ROWS_VEC).
  var aRow: array<u32, TM / SG>;
  var aPiece: array<u32, TM / SG>;
  for (var h = 0u; h < TM / SG; h++) {
    let mh = m0 + SG * h;
    aRow[h] = rowBase(0u, z, mh + lane);
    aPiece[h] = rowBase(0u, z, min(mh + 4u * (lane % 2u), max(p.M, 4u) - 4u)) + (lane / 2u) * ska;
  }
  var acc: array<vec4<f32>, TM>;
  let kMain = p.K & ~3u;
  for (var k = 0u; k < kMain; k += 4u) {
    let bt = transpose(quad(1u, bb, k)); // bt[j] = B[k + j, n0 .. n0 + 3]
    for (var h = 0u; h < TM / SG; h++) {
      var av: vec4<f32>;
      if (A_ROWS_VEC) {
        av = ld4(0u, aPiece[h] + k * ska); // A[m0 + 8 h + 4 (lane % 2) .. + 3, k + lane / 2]
      } else if (A_KC && A_VEC) {
        av = ld4(0u, aRow[h] + k); // A[m0 + 8 h + lane, k .. k + 3]
      } else {
        let i = aRow[h];
        av = vec4<f32>(ld(0u, i + k * ska), ld(0u, i + (k + 1u) * ska), ld(0u, i + (k + 2u) * ska), ld(0u, i + (k + 3u) * ska));
      }
      let all = lanes8(av);
      for (var j = 0u; j < 4u; j++) {
        for (var r = 0u; r < SG; r++) {
          // A[m0 + 8 h + r, k + j]: lane r's component j, or (A_ROWS_VEC) lane 2 j + r / 4's component r % 4.
          let a = select(all[r][j], all[2u * j + r / 4u][r % 4u], A_ROWS_VEC);
          acc[SG * h + r] = fma(vec4<f32>(a), bt[j], acc[SG * h + r]);
        }
      }
    }
  }
  for (var k = kMain; k < p.K; k++) {
    let bv = at4(1u, bb, k);
    for (var h = 0u; h < TM / SG; h++) {
      let all = lanes8(vec4<f32>(ld(0u, aRow[h] + k * ska)));
      for (var r = 0u; r < SG; r++) {
        acc[SG * h + r] = fma(vec4<f32>(all[r].x), bv, acc[SG * h + r]);
      }
    }
  }
  store(z, m0, n0, &acc, TM);
}
