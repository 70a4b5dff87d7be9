// Online softmax statistics for the row kernels (a library: appended to kernels/softmax.wgsl, loss.wgsl and
// linear_cross_entropy.wgsl after kernels/row_reduce.wgsl, see defineLibrary in src/gpu/kernel.ts): one read pass of a row keeps the
// pair (m, s) = (max, sum of exp(x - m)), each invocation its own, and wg_reduce(RED_SOFTMAX) merges them.
//
// row_max_sum reads the kernel's rows: the kernel file declares `a` (rows of `p.n` f32, row-major) and its
// params `p` with the row length `n`; WG and wg_reduce come from kernels/row_reduce.wgsl.

const LOWEST: f32 = -0x1.fffffep+127f; // the most negative finite f32

// One more element x into an online (max m, sum of exp(x - m)) pair.
fn online_push(ms: vec2f, x: f32) -> vec2f {
  if (x > ms.x) {
    return vec2f(x, ms.y * exp(ms.x - x) + 1.0);
  }
  return vec2f(ms.x, ms.y + exp(x - ms.x));
}

// A merged pair as torch's softmax sees it: a row holding +inf has max +inf and sum exp(inf - inf) = NaN, so
// everything after is NaN; the online pair counted that term as 1 (its push takes exp(x - x) to be 1). A NaN
// in the row has already made the sum NaN (exp(NaN - m), whatever max did with it). Per row, on the bits.
fn softmax_pair(ms: vec2f) -> vec2f {
  let m = bitcast<u32>(ms.x);
  return select(ms, vec2f(ms.x, bitcast<f32>(m | 0x400000u)), m == 0x7f800000u); // +inf | quiet bit: a NaN
}

// (max, sum of exp(x - max)) over a[base .. base + n): the sum NaN when the row holds a NaN or a +inf.
fn row_max_sum(base: u32, lid: u32) -> vec2f {
  var ms = vec2f(LOWEST, 0.0);
  for (var k = lid; k < p.n; k += WG) {
    ms = online_push(ms, a[base + k]);
  }
  return softmax_pair(wg_reduce(ms, lid, RED_SOFTMAX));
}

// The gradient of a mean softmax cross-entropy with respect to one row's logits, shared by kernels/loss.wgsl
// (ce_bwd, the whole row in memory) and kernels/linear_cross_entropy.wgsl (lce_grad, the row one vocabulary chunk
// at a time): d/dx_k = gout / kept * (exp(x_k - m) / s - [k == target]), from the row's statistics (m, s) and the
// count of kept rows. An invalid target makes the row NaN (scale); an ignored row gets torch's log_softmax
// backward 0 - exp(y) * 0: 0, or NaN throughout when the row's softmax is (s NaN or 0: a NaN, a +inf or all -inf
// in the row; a finite 1 / s makes every probability finite). Per row, on the bits (is_finite: kernels/nan.wgsl,
// appended with kernels/row_reduce.wgsl).
struct CeGradRow {
  m: f32,
  inv_s: f32,
  scale: f32,
  dropped: f32,
  ignored: bool,
}

fn ce_grad_row(m: f32, s: f32, gout: f32, kept: f32, target_valid: bool, ignored: bool, nan: f32) -> CeGradRow {
  let inv_s = 1.0 / s;
  return CeGradRow(m, inv_s, select(nan, gout / kept, target_valid), select(0.0, nan, !is_finite(inv_s)), ignored);
}

// The gradient at one logit x of the row, `is_target` when its column is the row's target.
fn ce_grad(row: CeGradRow, x: f32, is_target: bool) -> f32 {
  let grad = row.scale * (exp(x - row.m) * row.inv_s - select(0.0, 1.0, is_target));
  return select(grad, row.dropped, row.ignored);
}
