// Dynamic loss scaling (src/optim/grad_scaler.ts): torch's _amp_foreach_non_finite_check_and_unscale_.
//
//   unscale      for one f32 gradient `grad` of n elements, in place:
//                  found_inf[0] = 1 if grad[i] is inf or NaN (tested on the bits: WGSL lets compilers assume
//                                 finite math, so `x != x` could be folded away);
//                  grad[i] *= inv_scale (left alone when inv_scale == 1, as torch does).
//                One invocation per element on the 2-D grid of src/gpu/grid.ts (`row` invocations per grid
//                row), 256 per workgroup; one dispatch per gradient, all into the same flag. Only an invocation
//                that sees a non-finite value touches the flag (an atomic store of 1), so clean steps cost no
//                atomics.
//   reset_flag   found_inf[0] = 0 (one invocation), before the first unscale of a step.
// The flag is a u32 the host reads once per step (GradScaler.step). Limits: n < 2^32.

struct Params {
  n: u32,
  row: u32,
  inv_scale: f32,
}

@group(0) @binding(0) var<storage, read_write> grad: array<f32>;
@group(0) @binding(1) var<storage, read_write> found_inf: array<atomic<u32>>;
@group(1) @binding(0) var<uniform> p: Params;

@compute @workgroup_size(256)
fn unscale(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.n) {
    return;
  }
  let v = grad[i];
  if (!is_finite(v)) { // inf or NaN, on the bits (kernels/nan.wgsl, appended)
    atomicStore(&found_inf[0], 1u);
  }
  if (p.inv_scale != 1.0) {
    grad[i] = v * p.inv_scale;
  }
}

@compute @workgroup_size(1)
fn reset_flag() {
  atomicStore(&found_inf[0], 0u);
}
