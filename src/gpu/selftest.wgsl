// C[M,N] = A[M,K] · B[K,N], all row-major f32.
// Register-blocked, no workgroup memory (barriers are costly on CPU Vulkan drivers): each invocation holds a
// TM×4 block of C in registers (TM rows, one vec4 of columns), streaming a row of B as vec4 and A as scalars.
// Requires N % 4 == 0 (B and C are read as vec4); any M and K.

struct Params {
  M: u32,
  N: u32,
  K: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;
@group(1) @binding(0) var<uniform> p: Params;

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;
const TM: u32 = 8u;

@compute @workgroup_size(WG_X, WG_Y)
fn matmul_nn_v1(@builtin(global_invocation_id) g: vec3u) {
  let n4 = p.N / 4u;
  let col = g.x;
  let row0 = g.y * TM;
  if (col >= n4 || row0 >= p.M) {
    return;
  }
  var acc: array<vec4<f32>, TM>;
  var rows: array<u32, TM>;
  for (var i = 0u; i < TM; i++) {
    rows[i] = min(row0 + i, p.M - 1u) * p.K;
  }
  for (var k = 0u; k < p.K; k++) {
    let bv = b[k * n4 + col];
    for (var i = 0u; i < TM; i++) {
      acc[i] = fma(vec4<f32>(a[rows[i] + k]), bv, acc[i]);
    }
  }
  for (var i = 0u; i < TM; i++) {
    if (row0 + i < p.M) {
      c[(row0 + i) * n4 + col] = acc[i];
    }
  }
}
