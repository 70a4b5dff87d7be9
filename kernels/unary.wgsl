// Elementwise unary ops (src/tensor/ops/unary.ts): neg, exp, log, sqrt, rsqrt, tanh, sigmoid, silu,
// gelu (exact, erf-based: PyTorch's default) and gelu_tanh (the tanh approximation), pow by a scalar,
// and multiply/add a scalar.
//
//   unary       out[i] = F(x = x_in[i])                    forward
//   unary_grad  out[i] = D(g = gout[i], x = x_in[i])       backward: the input's gradient
//   glu         out[i] = F(x = x_in[i]) * up_in[i]          gated unit, F an activation (silu, gelu, gelu_tanh)
//   glu_grad    out[i] = D(g = gout[i] * up_in[i], x = x_in[i])   dgate
//               dup[i] = gout[i] * F(x = x_in[i])                 dup, both from one read of gout, x_in, up_in
//
// {{F}} and {{D}} are WGSL expressions in x (and g), using the helpers below and `p.alpha` (the scalar
// operand of pow / mul_scalar / add_scalar). A dispatch sets both (the unused one to `0.0`; glu_grad uses both).
// glu is the LLaMA MLP's act(gate) ⊙ up with the activation's own F and D (src/kernels/unary.ts GLU_ACTS): the
// same f32 roundings as unary then binary mul (forward) and mul's two gradients then unary_grad (backward), in one
// dispatch each instead of two and three, and 2 + 3 loads per element instead of 3 + 6.
// Elements move in VT units (src/gpu/grid.ts `elementwise`): vec4<f32> when the size is a multiple of 4
// (define VEC; n then counts vec4s, and F / D apply per component), else f32.
// The helpers keep relative accuracy over all of f32 (tested down to values like 1e-27): exp() only of
// non-positive arguments, and no 1 - (almost 1).

struct Params {
  n: u32,
  row: u32,
  alpha: f32,
}

@group(0) @binding(0) var<storage, read> x_in: array<{{VT:f32}}>;
@group(0) @binding(1) var<storage, read> gout: array<{{VT:f32}}>;
@group(0) @binding(2) var<storage, read_write> out: array<{{VT:f32}}>;
@group(0) @binding(3) var<storage, read> up_in: array<{{VT:f32}}>;
@group(0) @binding(4) var<storage, read_write> dup: array<{{VT:f32}}>;
@group(1) @binding(0) var<uniform> p: Params;

const SQRT1_2: f32 = 0.70710678118654752;     // 1/sqrt(2)
const INV_SQRT_2PI: f32 = 0.3989422804014327; // 1/sqrt(2*pi)
const SQRT_2_PI: f32 = 0.7978845608028654;    // sqrt(2/pi)

fn sigmoid(x: f32) -> f32 {
  let e = exp(-abs(x));
  let s = 1.0 / (1.0 + e);
  return select(e * s, s, x >= 0.0);
}

// 1 - sigmoid(x) is computed as sigmoid(-x) throughout: exact where 1 - s would cancel.
fn d_sigmoid(x: f32) -> f32 {
  return sigmoid(x) * sigmoid(-x);
}

// tanh from exp(-2|x|) (never overflows); a Taylor polynomial near 0, where 1 - e would cancel.
fn tanh_stable(x: f32) -> f32 {
  let a = abs(x);
  if (a < 0.125) {
    let x2 = x * x;
    return x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))));
  }
  let e = exp(-2.0 * a);
  return sign(x) * (1.0 - e) / (1.0 + e);
}

// 1 - tanh^2 = 4e / (1 + e)^2 with e = exp(-2|x|): no cancellation for large |x|.
fn d_tanh(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  return 4.0 * e / ((1.0 + e) * (1.0 + e));
}

fn silu(x: f32) -> f32 {
  return x * sigmoid(x);
}

fn d_silu(x: f32) -> f32 {
  let s = sigmoid(x);
  return s * (1.0 + x * sigmoid(-x));
}

// erfc with fractional error < 1.2e-7 everywhere (Numerical Recipes' Chebyshev fit), so the normal CDF
// keeps its relative accuracy far into the negative tail.
fn erfc_(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
          t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return select(2.0 - r, r, x >= 0.0);
}

fn normal_cdf(x: f32) -> f32 {
  return 0.5 * erfc_(-x * SQRT1_2);
}

fn gelu(x: f32) -> f32 {
  return x * normal_cdf(x);
}

fn d_gelu(x: f32) -> f32 {
  return normal_cdf(x) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
}

// 0.5 * x * (1 + tanh(u)) == x * sigmoid(2u), u = sqrt(2/pi) * (x + 0.044715 x^3)
fn gelu_tanh(x: f32) -> f32 {
  return x * sigmoid(2.0 * SQRT_2_PI * (x + 0.044715 * x * x * x));
}

fn d_gelu_tanh(x: f32) -> f32 {
  let u2 = 2.0 * SQRT_2_PI * (x + 0.044715 * x * x * x);
  let s = sigmoid(u2);
  return s + x * s * sigmoid(-u2) * 2.0 * SQRT_2_PI * (1.0 + 3.0 * 0.044715 * x * x);
}

// x^e with PyTorch's answers for a negative base: defined for integer e (sign by parity), NaN otherwise.
fn powf(x: f32, e: f32) -> f32 {
  if (e == 0.0) {
    return 1.0;
  }
  if (e == 1.0) {
    return x;
  }
  if (e == 2.0) {
    return x * x;
  }
  let r = pow(abs(x), e);
  if (x >= 0.0) {
    return r;
  }
  if (fract(e) != 0.0) {
    return bitcast<f32>(0x7fc00000u | (bitcast<u32>(x) & 0u)); // NaN, built at run time
  }
  return select(r, -r, fract(0.5 * e) != 0.0);
}

fn d_pow(x: f32, e: f32) -> f32 {
  return select(e * powf(x, e - 1.0), 0.0, e == 0.0);
}

fn f_of(x: f32) -> f32 {
  return {{F}};
}

fn d_of(g: f32, x: f32) -> f32 {
  return {{D}};
}

//#if VEC
fn f_unit(x: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(f_of(x.x), f_of(x.y), f_of(x.z), f_of(x.w));
}

fn d_unit(g: vec4<f32>, x: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(d_of(g.x, x.x), d_of(g.y, x.y), d_of(g.z, x.z), d_of(g.w, x.w));
}
//#else
fn f_unit(x: f32) -> f32 {
  return f_of(x);
}

fn d_unit(g: f32, x: f32) -> f32 {
  return d_of(g, x);
}
//#endif

@compute @workgroup_size(256)
fn unary(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.n) {
    return;
  }
  out[i] = f_unit(x_in[i]);
}

@compute @workgroup_size(256)
fn unary_grad(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.n) {
    return;
  }
  out[i] = d_unit(gout[i], x_in[i]);
}

@compute @workgroup_size(256)
fn glu(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.n) {
    return;
  }
  out[i] = f_unit(x_in[i]) * up_in[i];
}

@compute @workgroup_size(256)
fn glu_grad(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.y * p.row + gid.x;
  if (i >= p.n) {
    return;
  }
  let g = gout[i];
  let x = x_in[i];
  out[i] = d_unit(g * up_in[i], x);
  dup[i] = g * f_unit(x);
}
