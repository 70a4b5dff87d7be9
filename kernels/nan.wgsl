// NaN and infinity tests on the bits, and a max and min that propagate NaN (a library: src/gpu/nan.ts `NAN`,
// appended to the kernels that test for NaN, and needed by kernels/row_reduce.wgsl).
//
// WGSL lets a compiler assume finite math: a CPU driver may fold `x != x` to false (lavapipe does) and may
// compile max, min and float compares as if NaN did not exist, so a NaN that torch propagates could be dropped
// (max(NaN, x) = x) or read as "masked" (NaN > MASKED is false). Integer compares of the bits stay exact: a
// kernel tests for NaN with these, never with a float compare, wherever a select, max, min or compare could
// otherwise turn a NaN input into a finite result.

// x is NaN.
fn is_nan(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

// Per component: NaN.
fn is_nan2(v: vec2f) -> vec2<bool> {
  return (bitcast<vec2u>(v) & vec2u(0x7fffffffu)) > vec2u(0x7f800000u);
}

// x is neither infinite nor NaN.
fn is_finite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// x != 0 as IEEE 754 has it: true for NaN, false for +0 and -0.
fn nonzero(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) != 0u;
}

// max(a, b), NaN when either is (torch.maximum, clamp_min).
fn nan_max(a: f32, b: f32) -> f32 {
  return select(max(a, b), a + b, is_nan(a) || is_nan(b));
}

// min(a, b), NaN when either is (torch.minimum, clamp_max).
fn nan_min(a: f32, b: f32) -> f32 {
  return select(min(a, b), a + b, is_nan(a) || is_nan(b));
}
