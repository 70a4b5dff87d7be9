// Multi-tensor slots (a library: appended to kernels/optim_multi.wgsl and kernels/grad_scaler.wgsl, see
// defineLibrary in src/gpu/kernel.ts; the launchers' side, which fills these params and defines, is
// src/kernels/slots.ts). One dispatch works on up to 8 tensors, slot j bound as its own buffers (WGSL cannot
// index a runtime list of buffers); the variant for S slots has define S<j> for j < S.
//
// The kernel file declares its params `params` with, per slot j: n<j> (its length, in the kernel's units) and
// start<j> for j >= 1 (its first workgroup: the prefix sums of the slots' workgroup counts, so a workgroup never
// spans two slots; slot 0 starts at 0, unused starts are 0xffffffff). A workgroup finds its slot as the last
// start <= its index (7 compares of uniform values), so the slot, and the `switch` on it that picks the slot's
// bindings, is uniform per workgroup: a CPU driver (lavapipe runs a workgroup as SIMD lanes) takes one case
// instead of running every case masked (per-invocation slots made the clip's scaling pass 6x slower).

// The slot holding workgroup (or invocation) i: the last start <= i (the starts ascend; unused ones are 0xffffffff).
fn slot_of(i: u32) -> u32 {
  var j = 0u;
  j = select(j, 1u, i >= params.start1);
  j = select(j, 2u, i >= params.start2);
  j = select(j, 3u, i >= params.start3);
  j = select(j, 4u, i >= params.start4);
  j = select(j, 5u, i >= params.start5);
  j = select(j, 6u, i >= params.start6);
  j = select(j, 7u, i >= params.start7);
  return j;
}

// Slot j's first workgroup and length.
struct SlotSpan {
  start: u32,
  n: u32,
}

fn slot_span(j: u32) -> SlotSpan {
  switch j {
//#if S1
    case 1u: { return SlotSpan(params.start1, params.n1); }
//#endif
//#if S2
    case 2u: { return SlotSpan(params.start2, params.n2); }
//#endif
//#if S3
    case 3u: { return SlotSpan(params.start3, params.n3); }
//#endif
//#if S4
    case 4u: { return SlotSpan(params.start4, params.n4); }
//#endif
//#if S5
    case 5u: { return SlotSpan(params.start5, params.n5); }
//#endif
//#if S6
    case 6u: { return SlotSpan(params.start6, params.n6); }
//#endif
//#if S7
    case 7u: { return SlotSpan(params.start7, params.n7); }
//#endif
    default: { return SlotSpan(0u, params.n0); }
  }
}

// The elementwise entries' place: invocation lid of workgroup wid (256 per workgroup, a 2-D grid of `params.gx`
// workgroups per grid row) works on element k of slot j, when k < n (the slot's last workgroup is ragged).
struct SlotElem {
  j: u32,
  k: u32,
  n: u32,
}

fn slot_elem(wid: vec3u, lid: u32) -> SlotElem {
  let w = wid.y * params.gx + wid.x;
  let j = slot_of(w);
  let span = slot_span(j);
  return SlotElem(j, (w - span.start) * 256u + lid, span.n);
}
