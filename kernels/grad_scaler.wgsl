// Dynamic loss scaling (src/optim/grad_scaler.ts): torch's _amp_foreach_non_finite_check_and_unscale_.
//
//   unscale      for up to 8 f32 gradients grad<j> (slots, as kernels/optim_multi.wgsl: the variant for S slots
//                has define S<j> for j < S and binds grad0 .. grad<S-1>) of n<j> elements, in place:
//                  found_inf[0] = 1 if grad<j>[i] is inf or NaN (tested on the bits: WGSL lets compilers assume
//                                 finite math, so `x != x` could be folded away);
//                  grad<j>[i] *= inv_scale (left alone when inv_scale == 1, as torch does).
//                Slot j owns the workgroups start<j> .. start<j+1> (prefix sums of its ceil(n<j> / 256); start0 = 0,
//                unused starts 0xffffffff); a workgroup finds its slot as the last start <= its index, so the slot
//                and the `switch` on it are uniform per workgroup (a CPU driver takes one case, not all of them
//                masked). 256 invocations per workgroup on a 2-D grid of workgroups (src/gpu/grid.ts, `gx` per
//                grid row). Several dispatches of a step write the same flag. Only an invocation that sees a
//                non-finite value touches the flag (an atomic store of 1), so clean steps cost no atomics. The
//                per-slot cases are one text repeated with the slot's index: edit them alike.
//   reset_flag   found_inf[0] = 0 (one invocation), before the first unscale of a step.
// The flag is a u32 the host reads once per step (GradScaler.step). Limits: n < 2^32.

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
@group(1) @binding(0) var<uniform> p: Params;

// Raise the flag for a non-finite value and unscale it: the body of every slot's case.
fn unscaled(x: f32) -> f32 {
  if (!is_finite(x)) { // inf or NaN, on the bits (kernels/nan.wgsl, appended)
    atomicStore(&found_inf[0], 1u);
  }
  return x * p.inv_scale;
}

@compute @workgroup_size(256)
fn unscale(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let w = wid.y * p.gx + wid.x;
  var j = 0u;
  var start = 0u;
  var n = p.n0;
  if (w >= p.start1) {
    j = 1u;
    start = p.start1;
    n = p.n1;
  }
  if (w >= p.start2) {
    j = 2u;
    start = p.start2;
    n = p.n2;
  }
  if (w >= p.start3) {
    j = 3u;
    start = p.start3;
    n = p.n3;
  }
  if (w >= p.start4) {
    j = 4u;
    start = p.start4;
    n = p.n4;
  }
  if (w >= p.start5) {
    j = 5u;
    start = p.start5;
    n = p.n5;
  }
  if (w >= p.start6) {
    j = 6u;
    start = p.start6;
    n = p.n6;
  }
  if (w >= p.start7) {
    j = 7u;
    start = p.start7;
    n = p.n7;
  }
  let i = (w - start) * 256u + lid;
  if (i >= n) {
    return;
  }
  let write = p.inv_scale != 1.0;
  switch j {
    default: {
      let v = unscaled(grad0[i]);
      if (write) {
        grad0[i] = v;
      }
    }
//#if S1
    case 1u: {
      let v = unscaled(grad1[i]);
      if (write) {
        grad1[i] = v;
      }
    }
//#endif
//#if S2
    case 2u: {
      let v = unscaled(grad2[i]);
      if (write) {
        grad2[i] = v;
      }
    }
//#endif
//#if S3
    case 3u: {
      let v = unscaled(grad3[i]);
      if (write) {
        grad3[i] = v;
      }
    }
//#endif
//#if S4
    case 4u: {
      let v = unscaled(grad4[i]);
      if (write) {
        grad4[i] = v;
      }
    }
//#endif
//#if S5
    case 5u: {
      let v = unscaled(grad5[i]);
      if (write) {
        grad5[i] = v;
      }
    }
//#endif
//#if S6
    case 6u: {
      let v = unscaled(grad6[i]);
      if (write) {
        grad6[i] = v;
      }
    }
//#endif
//#if S7
    case 7u: {
      let v = unscaled(grad7[i]);
      if (write) {
        grad7[i] = v;
      }
    }
//#endif
  }
}

@compute @workgroup_size(1)
fn reset_flag() {
  atomicStore(&found_inf[0], 0u);
}
