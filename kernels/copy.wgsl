// Bandwidth kernels: a vec4 copy (the copy-bandwidth ceiling of `alignx info` and the bench) and a fill.
// Each invocation moves one vec4; the grid is 2-D so sizes beyond 65535 workgroups still fit.

struct Params {
  n4: u32,      // number of vec4 elements
  row: u32,     // invocations per grid row (workgroups in x times 256)
  value: f32,   // fill value
}

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
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
