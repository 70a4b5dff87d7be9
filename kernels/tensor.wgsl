// Tensor core helper: accumulate an f32 gradient in place (`dst += src`, how autograd sums gradients into
// `.grad` without reallocating it). Fills (zeros/ones/full) use the runtime's fill (kernels/copy.wgsl); f16
// gradients are summed by kernels/cast.wgsl's accumulate_f16.
// One invocation per VT unit over a 2-D grid (`row` = invocations per grid row), so sizes beyond 65535
// workgroups still fit: VT is vec4<f32> when the size is a multiple of 4 (then n counts vec4s), else f32
// (src/gpu/grid.ts `elementwise`).

struct Params {
  n: u32,
  row: u32,
  value: f32,
}

@group(0) @binding(0) var<storage, read> src: array<{{VT:f32}}>;
@group(0) @binding(1) var<storage, read_write> dst: array<{{VT:f32}}>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(256)
fn accumulate(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i < p.n) {
    dst[i] = dst[i] + src[i];
  }
}

