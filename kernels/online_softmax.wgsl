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

// (max, sum of exp(x - max)) over a[base .. base + n).
fn row_max_sum(base: u32, lid: u32) -> vec2f {
  var ms = vec2f(LOWEST, 0.0);
  for (var k = lid; k < p.n; k += WG) {
    ms = online_push(ms, a[base + k]);
  }
  return wg_reduce(ms, lid, RED_SOFTMAX);
}
