// Optimizer updates and gradient-norm clipping (src/optim). Every buffer is a flat, contiguous f32 array of
// one parameter tensor (or its gradient / state), n elements.
//
//   adamw         torch.optim.AdamW, one fused pass per parameter: reads p, g, m, v; writes p, m, v.
//                   p *= decay                          decay = 1 - lr * weight_decay (decoupled)
//                   m  = beta1 * m + (1 - beta1) * g
//                   v  = beta2 * v + (1 - beta2) * g * g
//                   p -= step_size * m / (sqrt(v) / bc2_sqrt + eps)
//                 step_size = lr / (1 - beta1^t) and bc2_sqrt = sqrt(1 - beta2^t) come from the host (float64,
//                 per parameter's own step count t), so a step is one dispatch per tensor and no upload.
//   sgd           torch.optim.SGD without momentum: p -= lr * (g + weight_decay * p).
//   sgd_momentum  with momentum: d = g + weight_decay * p; buf = d on the first step (`first` = 1, buf is not
//                 read), else momentum * buf + (1 - dampening) * d; p -= lr * (nesterov ? d + momentum * buf
//                 : buf).
//   norm_finish   clip_grad_norm_, pass 2: one workgroup sums partial[0 .. count) and writes total[0] = sqrt(sum).
//                 Passes 1 (sums of squares into `partial`) and 3 (the in-place scaling, NaN rule included) are
//                 multi-tensor: kernels/optim_multi.wgsl, which also holds the multi-tensor AdamW the optimizer
//                 runs (src/optim/adamw.ts); `adamw` here is the per-tensor form (launcher rows, benchmarks).
//
// Elements move in VT units (src/gpu/grid.ts `elementwise`): vec4<f32> when the tensor's size is a multiple of
// 4 (define VEC; n then counts vec4s), else f32; every formula reads the same for both.
// Launch: elementwise entries run one invocation per element on a 2-D grid (`row` invocations per grid row,
// see src/gpu/grid.ts), 256 per workgroup; norm_finish runs one workgroup,
// WG wide (kernels/row_reduce.wgsl, appended: 256 on GPUs, 8 on lavapipe). Neighbouring invocations touch
// neighbouring addresses. The params struct is shared by every
// entry point: a dispatch passes the fields its entry reads and zeros for the rest.

struct Params {
  n: u32,
  row: u32,
  // adamw
  decay: f32,
  beta1: f32,
  beta2: f32,
  one_minus_beta1: f32,
  one_minus_beta2: f32,
  step_size: f32,
  bc2_sqrt: f32,
  eps: f32,
  // sgd and sgd_momentum
  lr: f32,
  weight_decay: f32,
  momentum: f32,
  one_minus_dampening: f32,
  nesterov: u32,
  first: u32,
  // norm_finish
  groups: u32,
}

@group(0) @binding(0) var<storage, read_write> p: array<{{VT:f32}}>;
@group(0) @binding(1) var<storage, read> g: array<{{VT:f32}}>;
@group(0) @binding(2) var<storage, read_write> m: array<{{VT:f32}}>;
@group(0) @binding(3) var<storage, read_write> v: array<{{VT:f32}}>;
@group(0) @binding(4) var<storage, read_write> buf: array<{{VT:f32}}>;
@group(0) @binding(6) var<storage, read_write> partial: array<f32>;
@group(0) @binding(7) var<storage, read_write> total: array<f32>;
@group(1) @binding(0) var<uniform> params: Params;

fn flat(gid: vec3u) -> u32 {
  return gid.y * params.row + gid.x;
}

@compute @workgroup_size(256)
fn adamw(@builtin(global_invocation_id) gid: vec3u) {
  let i = flat(gid);
  if (i >= params.n) {
    return;
  }
  let grad = g[i];
  let mi = params.beta1 * m[i] + params.one_minus_beta1 * grad;
  let vi = params.beta2 * v[i] + params.one_minus_beta2 * (grad * grad);
  let denom = sqrt(vi) / params.bc2_sqrt + params.eps;
  p[i] = p[i] * params.decay - params.step_size * (mi / denom);
  m[i] = mi;
  v[i] = vi;
}

// The gradient with L2 weight decay folded in (SGD's coupled decay).
fn sgd_direction(i: u32) -> {{VT:f32}} {
  return g[i] + params.weight_decay * p[i];
}

@compute @workgroup_size(256)
fn sgd(@builtin(global_invocation_id) gid: vec3u) {
  let i = flat(gid);
  if (i >= params.n) {
    return;
  }
  p[i] = p[i] - params.lr * sgd_direction(i);
}

@compute @workgroup_size(256)
fn sgd_momentum(@builtin(global_invocation_id) gid: vec3u) {
  let i = flat(gid);
  if (i >= params.n) {
    return;
  }
  let d = sgd_direction(i);
  var b = d;
  if (params.first == 0u) {
    b = params.momentum * buf[i] + params.one_minus_dampening * d;
  }
  buf[i] = b;
  var step = b;
  if (params.nesterov != 0u) {
    step = d + params.momentum * b;
  }
  p[i] = p[i] - params.lr * step;
}

@compute @workgroup_size(WG)
fn norm_finish(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var k = lid; k < params.groups; k += WG) {
    acc += partial[k];
  }
  let s = wg_reduce(vec2f(acc, 0.0), lid, RED_SUM).x;
  if (lid == 0u) {
    total[0] = sqrt(s);
  }
}
