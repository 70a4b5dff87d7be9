// Online softmax statistics for the row kernels (a library: appended to kernels/softmax.wgsl and loss.wgsl
// after kernels/row_reduce.wgsl, see defineLibrary in src/gpu/kernel.ts): one read pass of a row keeps the
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
