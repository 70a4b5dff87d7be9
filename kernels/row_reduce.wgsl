// Workgroup-wide reductions for the row kernels (a library: appended to kernels/norm.wgsl, softmax.wgsl,
// loss.wgsl, reduce.wgsl and optim.wgsl, see defineLibrary in src/gpu/kernel.ts). Every invocation of a workgroup calls
// wg_reduce in uniform control flow with its partial value and gets the workgroup's result.
//
// Ops on a vec2f (two independent lanes, except RED_SOFTMAX):
//   RED_SUM      u + v
//   RED_MAX      max(u, v), NaN if either is NaN (torch.amax; is_nan tests the bits: kernels/nan.wgsl, appended
//                with this library)
//   RED_SOFTMAX  online softmax pairs (m, s) = (max, sum of exp(x - m)): merged to the larger max; a NaN
//                anywhere makes the sum NaN (exp(NaN - m), or s NaN times anything), whatever max does with it
//
// WG (override) is the workgroup size the caller launched, a power of two. src/gpu/row_reduce.ts `rowLaunch` picks
// it per adapter with the define SUBGROUP_ROWS:
//   - GPUs: WG = 256, a tree in workgroup memory (log2 WG barrier steps);
//   - CPU drivers (lavapipe): WG = 8, one SIMD register. There a workgroup barrier costs a coroutine switch
//     per 8-lane subgroup, which made 256-wide row kernels 3-6x slower than 8-wide ones;
//   - SUBGROUP_ROWS (WG is exactly the subgroup size): subgroup reductions, no workgroup memory, no barrier.

override WG: u32 = 256u;
const RED_SUM: u32 = 0u;
const RED_MAX: u32 = 1u;
const RED_SOFTMAX: u32 = 2u;

fn red_merge(u: vec2f, v: vec2f, op: u32) -> vec2f {
  if (op == RED_SOFTMAX) {
    let m = max(u.x, v.x);
    return vec2f(m, u.y * exp(u.x - m) + v.y * exp(v.x - m));
  }
  if (op == RED_MAX) {
    return select(max(u, v), u + v, is_nan2(u) | is_nan2(v)); // a NaN wins
  }
  return u + v;
}

//#if SUBGROUP_ROWS
fn wg_reduce(v: vec2f, lid: u32, op: u32) -> vec2f {
  if (op == RED_SOFTMAX) {
    let m = subgroupMax(v.x);
    return vec2f(m, subgroupAdd(v.y * exp(v.x - m)));
  }
  if (op == RED_MAX) {
    let nan = subgroupAdd(select(vec2f(0.0), vec2f(1.0), is_nan2(v))) > vec2f(0.0);
    return select(subgroupMax(v), subgroupAdd(v), nan); // a NaN anywhere: the sum, which is NaN
  }
  return subgroupAdd(v);
}
//#else
var<workgroup> wg_red: array<vec2f, WG>;

fn wg_reduce(v: vec2f, lid: u32, op: u32) -> vec2f {
  wg_red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      wg_red[lid] = red_merge(wg_red[lid], wg_red[lid + s], op);
    }
    workgroupBarrier();
  }
  let total = wg_red[0];
  workgroupBarrier(); // wg_red may be reused right after
  return total;
}
//#endif
