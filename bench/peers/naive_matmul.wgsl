// The floor to beat: one output element per invocation, 16×16 workgroups, scalar loads, no tiling.
// C[M,N] = A[M,K] · B[K,N], row-major f32.

struct Params {
  M: u32,
  N: u32,
  K: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(16, 16)
fn matmul_naive(@builtin(global_invocation_id) g: vec3u) {
  let col = g.x;
  let row = g.y;
  if (row >= p.M || col >= p.N) {
    return;
  }
  var acc = 0.0;
  for (var k = 0u; k < p.K; k++) {
    acc += a[row * p.K + k] * b[k * p.N + col];
  }
  c[row * p.N + col] = acc;
}
