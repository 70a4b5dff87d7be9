// Multi-tensor optimizer passes (src/optim): one dispatch updates up to 8 tensors ("slots" 0..S-1), since WGSL
// cannot index a runtime list of buffers and each dispatch costs a launch (per tensor, AdamW and the clip were 64
// of the 179 dispatches of a 2-layer model's training step). The per-tensor kernels and the norm's final pass
// (`norm_finish`) are kernels/optim.wgsl; launchers: src/kernels/optim.ts (`adamwMulti`, `clipGradNorm`).
//
// Slots: tensor j is bound as p<j> (parameter) and g<j> (gradient); the shader variant for S slots has define
// S<j> for j < S, so an entry statically uses exactly the bindings the dispatch passes (the device allows
// maxStorageBuffersPerShaderStage of them: 10 on lavapipe). Each slot j has, in the params: n<j> (its length
// in VT units), start<j> (its first workgroup) and the entry's own per-slot fields; a workgroup finds its slot
// with kernels/slots.wgsl (appended: `slot_of`, `slot_span`, `slot_elem`, which also says why the slot is found per
// workgroup, not per invocation), and a `switch` on it picks the slot's bindings, each case one call of the
// entry's per-element function with pointers to that slot's buffers.
//
//   adamw_multi       torch.optim.AdamW over S parameters, exactly kernels/optim.wgsl `adamw` per element, with
//                     slot j's exp_avg at m[off<j> ..) and exp_avg_sq at v[off<j> ..): the optimizer's state
//                     arenas (src/optim/adamw.ts), one m and one v buffer for many parameters. Per slot:
//                     step_size<j> = lr / (1 - beta1^t), bc2_sqrt<j> = sqrt(1 - beta2^t) (its own step count t),
//                     decay<j> = 1 - lr * weight_decay (its group's). With define CLIP the gradient is first
//                     multiplied by clip_grad_norm_'s coefficient min(1, max_norm / (total[0] + 1e-6)), read on the
//                     GPU (the gradient itself is not written: the trainer's clip + step read it once).
//   sumsq_multi       clip_grad_norm_, pass 1 over S gradients: the off<j> workgroups of slot j grid-stride over
//                     g<j>; workgroup w (of the dispatch) writes its sum of squares to partial[base + w].
//   clip_scale_multi  pass 3 over S gradients: g<j> *= min(1, max_norm / (total[0] + 1e-6)).
// The clip coefficient keeps kernels/optim.wgsl's NaN rule: a NaN norm makes every gradient (and, fused into
// AdamW, every updated parameter) NaN, as torch's clamp(max=1) keeps it (nan_min, kernels/nan.wgsl).
//
// Elements move in VT units (vec4<f32> when every slot's length is a multiple of 4: define VEC, lengths and
// offsets in vec4s; the launcher groups tensors so). Elementwise entries run 256 invocations per workgroup on
// a 2-D grid of workgroups (src/gpu/grid.ts, `gx` workgroups per grid row; workgroup w = wid.y * gx + wid.x);
// sumsq_multi runs WG-wide workgroups (kernels/row_reduce.wgsl, appended) on a 1-D grid of at most 65535.
// The launchers' slot bookkeeping (start<j>, n<j>, the S<j> defines, the bindings): src/kernels/slots.ts.

struct Params {
  gx: u32,
  base: u32,
  beta1: f32,
  beta2: f32,
  one_minus_beta1: f32,
  one_minus_beta2: f32,
  eps: f32,
  max_norm: f32,
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
  off0: u32,
  off1: u32,
  off2: u32,
  off3: u32,
  off4: u32,
  off5: u32,
  off6: u32,
  off7: u32,
  step_size0: f32,
  step_size1: f32,
  step_size2: f32,
  step_size3: f32,
  step_size4: f32,
  step_size5: f32,
  step_size6: f32,
  step_size7: f32,
  bc2_sqrt0: f32,
  bc2_sqrt1: f32,
  bc2_sqrt2: f32,
  bc2_sqrt3: f32,
  bc2_sqrt4: f32,
  bc2_sqrt5: f32,
  bc2_sqrt6: f32,
  bc2_sqrt7: f32,
  decay0: f32,
  decay1: f32,
  decay2: f32,
  decay3: f32,
  decay4: f32,
  decay5: f32,
  decay6: f32,
  decay7: f32,
}

@group(0) @binding(0) var<storage, read_write> p0: array<{{VT:f32}}>;
@group(0) @binding(1) var<storage, read_write> p1: array<{{VT:f32}}>;
@group(0) @binding(2) var<storage, read_write> p2: array<{{VT:f32}}>;
@group(0) @binding(3) var<storage, read_write> p3: array<{{VT:f32}}>;
@group(0) @binding(4) var<storage, read_write> p4: array<{{VT:f32}}>;
@group(0) @binding(5) var<storage, read_write> p5: array<{{VT:f32}}>;
@group(0) @binding(6) var<storage, read_write> p6: array<{{VT:f32}}>;
@group(0) @binding(7) var<storage, read_write> p7: array<{{VT:f32}}>;
@group(0) @binding(8) var<storage, read_write> g0: array<{{VT:f32}}>;
@group(0) @binding(9) var<storage, read_write> g1: array<{{VT:f32}}>;
@group(0) @binding(10) var<storage, read_write> g2: array<{{VT:f32}}>;
@group(0) @binding(11) var<storage, read_write> g3: array<{{VT:f32}}>;
@group(0) @binding(12) var<storage, read_write> g4: array<{{VT:f32}}>;
@group(0) @binding(13) var<storage, read_write> g5: array<{{VT:f32}}>;
@group(0) @binding(14) var<storage, read_write> g6: array<{{VT:f32}}>;
@group(0) @binding(15) var<storage, read_write> g7: array<{{VT:f32}}>;
@group(0) @binding(16) var<storage, read_write> m: array<{{VT:f32}}>;
@group(0) @binding(17) var<storage, read_write> v: array<{{VT:f32}}>;
@group(0) @binding(18) var<storage, read_write> partial: array<f32>;
@group(0) @binding(19) var<storage, read> total: array<f32>;
@group(1) @binding(0) var<uniform> params: Params;

// Slot j's own fields beside its span (kernels/slots.wgsl): `off` is adamw_multi's offset of the slot's state in
// the arenas, sumsq_multi's workgroup count of the slot.
struct Slot {
  off: u32,
  step_size: f32,
  bc2_sqrt: f32,
  decay: f32,
}

fn slot(j: u32) -> Slot {
  switch j {
//#if S1
    case 1u: { return Slot(params.off1, params.step_size1, params.bc2_sqrt1, params.decay1); }
//#endif
//#if S2
    case 2u: { return Slot(params.off2, params.step_size2, params.bc2_sqrt2, params.decay2); }
//#endif
//#if S3
    case 3u: { return Slot(params.off3, params.step_size3, params.bc2_sqrt3, params.decay3); }
//#endif
//#if S4
    case 4u: { return Slot(params.off4, params.step_size4, params.bc2_sqrt4, params.decay4); }
//#endif
//#if S5
    case 5u: { return Slot(params.off5, params.step_size5, params.bc2_sqrt5, params.decay5); }
//#endif
//#if S6
    case 6u: { return Slot(params.off6, params.step_size6, params.bc2_sqrt6, params.decay6); }
//#endif
//#if S7
    case 7u: { return Slot(params.off7, params.step_size7, params.bc2_sqrt7, params.decay7); }
//#endif
    default: { return Slot(params.off0, params.step_size0, params.bc2_sqrt0, params.decay0); }
  }
}

fn load_g(j: u32, k: u32) -> {{VT:f32}} {
  switch j {
//#if S1
    case 1u: { return g1[k]; }
//#endif
//#if S2
    case 2u: { return g2[k]; }
//#endif
//#if S3
    case 3u: { return g3[k]; }
//#endif
//#if S4
    case 4u: { return g4[k]; }
//#endif
//#if S5
    case 5u: { return g5[k]; }
//#endif
//#if S6
    case 6u: { return g6[k]; }
//#endif
//#if S7
    case 7u: { return g7[k]; }
//#endif
    default: { return g0[k]; }
  }
}

// clip_grad_norm_'s coefficient, NaN for a NaN norm (torch's clamp(max=1) keeps it; a WGSL min may drop it).
fn clip_coef() -> f32 {
  return nan_min(1.0, params.max_norm / (total[0] + 1e-6));
}

// AdamW on element k of one slot's parameter p and gradient g (kernels/optim.wgsl `adamw`), its state at
// m[s.off + k], v[s.off + k].
fn adamw_elem(p: ptr<storage, array<{{VT:f32}}>, read_write>, g: ptr<storage, array<{{VT:f32}}>, read_write>, k: u32, s: Slot) {
  let o = s.off + k;
  var grad = (*g)[k];
//#if CLIP
  grad = grad * clip_coef();
//#endif
  let mi = params.beta1 * m[o] + params.one_minus_beta1 * grad;
  let vi = params.beta2 * v[o] + params.one_minus_beta2 * (grad * grad);
  let denom = sqrt(vi) / s.bc2_sqrt + params.eps;
  (*p)[k] = (*p)[k] * s.decay - s.step_size * (mi / denom);
  m[o] = mi;
  v[o] = vi;
}

@compute @workgroup_size(256)
fn adamw_multi(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let e = slot_elem(wid, lid);
  if (e.k >= e.n) {
    return;
  }
  let k = e.k;
  let s = slot(e.j);
  switch e.j {
    default: { adamw_elem(&p0, &g0, k, s); }
//#if S1
    case 1u: { adamw_elem(&p1, &g1, k, s); }
//#endif
//#if S2
    case 2u: { adamw_elem(&p2, &g2, k, s); }
//#endif
//#if S3
    case 3u: { adamw_elem(&p3, &g3, k, s); }
//#endif
//#if S4
    case 4u: { adamw_elem(&p4, &g4, k, s); }
//#endif
//#if S5
    case 5u: { adamw_elem(&p5, &g5, k, s); }
//#endif
//#if S6
    case 6u: { adamw_elem(&p6, &g6, k, s); }
//#endif
//#if S7
    case 7u: { adamw_elem(&p7, &g7, k, s); }
//#endif
  }
}

//#if VEC
fn sq(x: vec4<f32>) -> f32 {
  return dot(x, x);
}
//#else
fn sq(x: f32) -> f32 {
  return x * x;
}
//#endif

@compute @workgroup_size(WG)
fn sumsq_multi(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let j = slot_of(wid.x);
  let span = slot_span(j);
  let s = slot(j);
  var acc = 0.0;
  for (var k = (wid.x - span.start) * WG + lid; k < span.n; k += s.off * WG) {
    acc += sq(load_g(j, k));
  }
  let r = wg_reduce(vec2f(acc, 0.0), lid, RED_SUM).x;
  if (lid == 0u) {
    partial[params.base + wid.x] = r;
  }
}

// Element k of one slot's gradient g times the clip coefficient c.
fn scale_elem(g: ptr<storage, array<{{VT:f32}}>, read_write>, k: u32, c: f32) {
  (*g)[k] = (*g)[k] * c;
}

@compute @workgroup_size(256)
fn clip_scale_multi(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let e = slot_elem(wid, lid);
  if (e.k >= e.n) {
    return;
  }
  let k = e.k;
  let c = clip_coef();
  switch e.j {
    default: { scale_elem(&g0, k, c); }
//#if S1
    case 1u: { scale_elem(&g1, k, c); }
//#endif
//#if S2
    case 2u: { scale_elem(&g2, k, c); }
//#endif
//#if S3
    case 3u: { scale_elem(&g3, k, c); }
//#endif
//#if S4
    case 4u: { scale_elem(&g4, k, c); }
//#endif
//#if S5
    case 5u: { scale_elem(&g5, k, c); }
//#endif
//#if S6
    case 6u: { scale_elem(&g6, k, c); }
//#endif
//#if S7
    case 7u: { scale_elem(&g7, k, c); }
//#endif
  }
}
