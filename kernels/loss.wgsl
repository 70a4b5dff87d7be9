// Pooling and similarity kernels for AlignX's losses (src/tensor/ops/loss.ts). Cross-entropy and
// l2_normalize live in kernels/softmax.wgsl (they share its row reductions).
//
//   masked_mean_fwd  x [B, T, D], mask [B, T] -> out [B, D]: out[b, d] = sum_t m[b,t] x[b,t,d] / sum_t m[b,t]
//                    over positions with m != 0 (so garbage, even NaN, in masked-out positions never leaks);
//                    an all-zero mask row gives zeros. The d == 0 invocation also writes inv[b] = 1 / sum_t m
//                    (0 for an empty row) for the backward. One invocation per output (b, d), walking t:
//                    neighbouring invocations read neighbouring d (coalesced).
//   masked_mean_bwd  dx[b, t, d] = gout[b, d] * mask[b, t] * inv[b]; one invocation per element of x.
//   contract         out[r, c] = sum_k lhs[r * lr + k * lk] * rhs[k * rk + c * rc] for r < rows, c < cols,
//                    k < depth: a small strided matrix product (the cosine-similarity matrix and both its
//                    gradients). One invocation per output; meant for small rows x cols (sentence batches),
//                    not for LLM-sized matmuls (src/tensor/ops/matmul.ts).
// All entries: a 1-D index over a 2-D grid, `row` invocations per grid row; sizes < 2^32 elements.

struct Params {
  b: u32,
  t: u32,
  d: u32,
  rows: u32,
  cols: u32,
  depth: u32,
  lr: u32,
  lk: u32,
  rk: u32,
  rc: u32,
  row: u32,
}

@group(0) @binding(0) var<storage, read> x_in: array<f32>;
@group(0) @binding(1) var<storage, read> mask: array<f32>;
@group(0) @binding(2) var<storage, read> gout: array<f32>;
@group(0) @binding(3) var<storage, read> lhs: array<f32>;
@group(0) @binding(4) var<storage, read> rhs: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> inv: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(256)
fn masked_mean_fwd(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.b * p.d) {
    return;
  }
  let b = i / p.d;
  let d = i - b * p.d;
  var acc = 0.0;
  var cnt = 0.0;
  for (var t = 0u; t < p.t; t++) {
    let m = mask[b * p.t + t];
    if (m != 0.0) {
      acc += m * x_in[(b * p.t + t) * p.d + d];
      cnt += m;
    }
  }
  let w = select(1.0 / cnt, 0.0, cnt == 0.0);
  out[i] = acc * w;
  if (d == 0u) {
    inv[b] = w;
  }
}

@compute @workgroup_size(256)
fn masked_mean_bwd(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.b * p.t * p.d) {
    return;
  }
  let bt = i / p.d;
  let d = i - bt * p.d;
  let b = bt / p.t;
  out[i] = gout[b * p.d + d] * mask[bt] * inv[b];
}

@compute @workgroup_size(256)
fn contract(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.rows * p.cols) {
    return;
  }
  let r = i / p.cols;
  let c = i - r * p.cols;
  var acc = 0.0;
  for (var k = 0u; k < p.depth; k++) {
    acc += lhs[r * p.lr + k * p.lk] * rhs[k * p.rk + c * p.rc];
  }
  out[i] = acc;
}
