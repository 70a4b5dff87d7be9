// Dynamic loss scaling (src/optim/grad_scaler.ts): torch's _amp_foreach_non_finite_check_and_unscale_.
//
//   unscale      for up to 8 f32 gradients grad<j> (slots, as kernels/optim_multi.wgsl: the variant for S slots
//                has define S<j> for j < S and binds grad0 .. grad<S-1>) of n<j> elements, in place:
//                  found_inf[0] = 1 if grad<j>[i] is inf or NaN (tested on the bits: WGSL lets compilers assume
//                                 finite math, so `x != x` could be folded away);
//                  grad<j>[i] *= inv_scale (left alone when inv_scale == 1, as torch does).
//                Slot j owns the workgroups start<j> .. start<j+1> (prefix sums of its ceil(n<j> / 256)); a
//                workgroup finds its slot with kernels/slots.wgsl (appended: `slot_elem`), uniform per
//                workgroup, and a `switch` on it calls `unscale_elem` with a pointer to that slot's gradient.
//                256 invocations per workgroup on a 2-D grid of workgroups (src/gpu/grid.ts, `gx` per grid
//                row). Several dispatches of a step write the same flag. Only an invocation that sees a
//                non-finite value touches the flag (an atomic store of 1), so clean steps cost no atomics.
//   reset_flag   found_inf[0] = 0 (one invocation), before the first unscale of a step.
// The flag is a u32 the host reads once per step (GradScaler.step). Limits: n < 2^32. Launcher:
// src/kernels/grad_scaler.ts, its slot bookkeeping src/kernels/slots.ts.

struct Params {
  gx: u32,
  inv_scale: f32,
  start1: u32,
  start2: u32,
  start3: u32,
  start4: u32,
  start5: u32,
  start6: u32,
  start7: u32,
  n0: u32,
  n1: u32,
  n2: u32,
  n3: u32,
  n4: u32,
  n5: u32,
  n6: u32,
  n7: u32,
}

@group(0) @binding(0) var<storage, read_write> grad0: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad1: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad2: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad3: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad4: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad5: array<f32>;
@group(0) @binding(6) var<storage, read_write> grad6: array<f32>;
@group(0) @binding(7) var<storage, read_write> grad7: array<f32>;
@group(0) @binding(8) var<storage, read_write> found_inf: array<atomic<u32>>;
@group(1) @binding(0) var<uniform> params: Params;

// Element i of one slot's gradient g: raise the flag for a non-finite value, and unscale it when `write`.
fn unscale_elem(g: ptr<storage, array<f32>, read_write>, i: u32, write: bool) {
  let x = (*g)[i];
  if (!is_finite(x)) { // inf or NaN, on the bits (kernels/nan.wgsl, appended)
    atomicStore(&found_inf[0], 1u);
  }
  if (write) {
    (*g)[i] = x * params.inv_scale;
  }
}

@compute @workgroup_size(256)
fn unscale(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let e = slot_elem(wid, lid);
  if (e.k >= e.n) {
    return;
  }
  let i = e.k;
  let write = params.inv_scale != 1.0;
  switch e.j {
    default: { unscale_elem(&grad0, i, write); }
//#if S1
    case 1u: { unscale_elem(&grad1, i, write); }
//#endif
//#if S2
    case 2u: { unscale_elem(&grad2, i, write); }
//#endif
//#if S3
    case 3u: { unscale_elem(&grad3, i, write); }
//#endif
//#if S4
    case 4u: { unscale_elem(&grad4, i, write); }
//#endif
//#if S5
    case 5u: { unscale_elem(&grad5, i, write); }
//#endif
//#if S6
    case 6u: { unscale_elem(&grad6, i, write); }
//#endif
//#if S7
    case 7u: { unscale_elem(&grad7, i, write); }
//#endif
  }
}

@compute @workgroup_size(1)
fn reset_flag() {
  atomicStore(&found_inf[0], 0u);
}
