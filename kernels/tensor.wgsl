// Tensor core helpers: fill a tensor with one value (zeros/ones/full), and accumulate a gradient in place
// (`dst += src`, how autograd sums gradients into `.grad` without reallocating it).
// One invocation per element over a 2-D grid (`row` = invocations per grid row), so sizes beyond
// 65535 workgroups still fit. Both buffers hold `n` f32 elements.

struct Params {
  n: u32,
  row: u32,
  value: f32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i < p.n) {
    dst[i] = p.value;
  }
}

@compute @workgroup_size(256)
fn accumulate(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i < p.n) {
    dst[i] = dst[i] + src[i];
  }
}

// accumulate for f16 tensors, which are stored two halves per 32-bit word: `n` counts words here. Each half is
// widened, added in f32 and rounded back (pack2x16float), so no shader-f16 feature is needed. In an odd-sized
// tensor the last word's upper half is padding and is added harmlessly.
@group(0) @binding(2) var<storage, read> src_words: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst_words: array<u32>;

@compute @workgroup_size(256)
fn accumulate_half(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i < p.n) {
    dst_words[i] = pack2x16float(unpack2x16float(dst_words[i]) + unpack2x16float(src_words[i]));
  }
}
