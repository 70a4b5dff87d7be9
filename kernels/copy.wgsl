// Bandwidth kernels: a vec4 copy (the copy-bandwidth ceiling of `alignx info` and the bench) and fills:
// fill_vec4 writes an f32 value, fill_bits an exact 32-bit pattern (integers, packed halves, NaN payloads,
// which an f32 round trip through the host or the shader may not keep).
// Each invocation moves one vec4; the grid is 2-D so sizes beyond 65535 workgroups still fit.

struct Params {
  n4: u32,      // number of vec4 elements
  row: u32,     // invocations per grid row (workgroups in x times 256)
  value: f32,   // fill_vec4's value
  bits: u32,    // fill_bits' word
}

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst_bits: array<vec4<u32>>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(256)
fn copy_vec4(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * p.row + g.x;
  if (i < p.n4) {
    dst[i] = src[i];
  }
}

@compute @workgroup_size(256)
fn fill_vec4(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * p.row + g.x;
  if (i < p.n4) {
    dst[i] = vec4<f32>(p.value);
  }
}

@compute @workgroup_size(256)
fn fill_bits(@builtin(global_invocation_id) g: vec3u) {
  let i = g.y * p.row + g.x;
  if (i < p.n4) {
    dst_bits[i] = vec4<u32>(p.bits);
  }
}
