// Shared by the matrix-product kernels (kernels/matmul_ops.wgsl, kernels/matmul_subgroup.wgsl; appended to
// each, see defineLibrary in src/gpu/kernel.ts). Per batch z,
//   C[z] = op(A[z]) · op(B[z]) (+ bias),   op(A) is [M, K], op(B) is [K, N], C is [M, N], all row-major.
// Element types: each of A, B, bias and C is f32 or IEEE half, independently (X_T, BIAS_T, C_T name them;
// the loads convert to f32, so every product accumulates in f32, and C_ST rounds once when it stores).
//
// Layout. Each operand is addressed through its "outer" dimension (m for A, n for B) and k: element (o, k)
// of operand X sits at X[off + o * SO + k * SK], where X_KC says whether X is contiguous along k:
//   A  (not transposed, stored [M, K]) KC: SO = K, SK = 1     A  (transposed, stored [K, M]): SO = 1, SK = M
//   B  (not transposed, stored [K, N])   : SO = 1, SK = N     B  (transposed, stored [N, K]) KC: SO = K, SK = 1
// so NN, NT, TN and TT are one source; no transposed copy is ever made. X_T is the binding's element type:
// a vec4 of the element type when the contiguous dimension is a multiple of 4 (then 4 elements along it load
// as one vec4), else a scalar; X_LD (one element at flat index i) and X_LD4 (4 consecutive elements from i)
// read either and return f32 / vec4<f32>.
// Batch z (batch0 + workgroup z) starts at A[z * sA], B[z * sB], C[z * M * N]; a stride of 0 shares the
// operand across the batch (a 2-D weight). bias (BIAS: `bias[n]` or `0.0`) adds one value per column.
// C_T / C_ST: vec4 stores when N % 4 == 0, else per-column scalar stores of the valid columns; the launcher's
// `accumulate` makes C_ST add C's current value first (C += op(A) · op(B), beta = 1: autograd accumulating a
// gradient in place), so every entry point has that variant through `store` below.
//
struct Params {
  M: u32,
  N: u32,
  K: u32,
  sA: u32,
  sB: u32,
  batch0: u32,
}

@group(0) @binding(0) var<storage, read> a: array<{{A_T}}>;
@group(0) @binding(1) var<storage, read> b: array<{{B_T}}>;
@group(0) @binding(2) var<storage, read> bias: array<{{BIAS_T:f32}}>;
@group(0) @binding(3) var<storage, read_write> c: array<{{C_T}}>;
@group(1) @binding(0) var<uniform> p: Params;

const TM: u32 = {{TM:4}}u;
const A_KC: bool = {{A_KC}};
const B_KC: bool = {{B_KC}};
const A_VEC: bool = {{A_VEC}};
const B_VEC: bool = {{B_VEC}};

fn ldA(i: u32) -> f32 { return {{A_LD}}; }
fn ldA4(i: u32) -> vec4<f32> { return {{A_LD4}}; }
fn ldB(i: u32) -> f32 { return {{B_LD}}; }
fn ldB4(i: u32) -> vec4<f32> { return {{B_LD4}}; }
fn biasAt(n: u32) -> f32 { return {{BIAS:0.0}}; }
// Store row values v (4 columns from flat index i, `cols` of them inside C).
fn stC(i: u32, v: vec4<f32>, cols: u32) { {{C_ST}} }

// Operand X (0 = A, 1 = B): one element / 4 consecutive elements at a flat index.
fn ld(x: u32, i: u32) -> f32 {
  if (x == 0u) {
    return ldA(i);
  }
  return ldB(i);
}
fn ld4(x: u32, i: u32) -> vec4<f32> {
  if (x == 0u) {
    return ldA4(i);
  }
  return ldB4(i);
}

// Outer size, contiguity and strides of operand x.
fn outer(x: u32) -> u32 { return select(p.N, p.M, x == 0u); }
fn kc(x: u32) -> bool { return select(B_KC, A_KC, x == 0u); }
fn isVec(x: u32) -> bool { return select(B_VEC, A_VEC, x == 0u); }
fn so(x: u32) -> u32 { return select(1u, p.K, kc(x)); }
fn sk(x: u32) -> u32 { return select(outer(x), 1u, kc(x)); }

// Flat index of element (o, 0) of operand x in batch z, with o clamped inside the operand.
fn rowBase(x: u32, z: u32, o: u32) -> u32 {
  let off = z * select(p.sB, p.sA, x == 0u);
  return off + min(o, outer(x) - 1u) * so(x);
}

// rowBase of the 4 outer indices o0 .. o0 + 3.
fn rowBases(x: u32, z: u32, o0: u32) -> vec4<u32> {
  return vec4<u32>(rowBase(x, z, o0), rowBase(x, z, o0 + 1u), rowBase(x, z, o0 + 2u), rowBase(x, z, o0 + 3u));
}

// X[o0 + c, k] for c < 4, one k (the K % 4 tail), from the 4 rowBases in `base`.
fn at4(x: u32, base: vec4<u32>, k: u32) -> vec4<f32> {
  let s = k * sk(x);
  return vec4<f32>(ld(x, base[0] + s), ld(x, base[1] + s), ld(x, base[2] + s), ld(x, base[3] + s));
}

// Rows o0..o0+3 of operand x at k..k+3 (k + 3 < K): q[r] = X[o0 + r, k .. k + 3].
fn quad(x: u32, base: vec4<u32>, k: u32) -> mat4x4<f32> {
  if (isVec(x) && kc(x)) {
    return mat4x4<f32>(ld4(x, base[0] + k), ld4(x, base[1] + k), ld4(x, base[2] + k), ld4(x, base[3] + k));
  }
  let s = sk(x);
  if (isVec(x)) {
    // Contiguous along the outer dimension: column j of the loaded matrix is X[o0 .. o0 + 3, k + j].
    let i = base[0] + k * s;
    return transpose(mat4x4<f32>(ld4(x, i), ld4(x, i + s), ld4(x, i + 2u * s), ld4(x, i + 3u * s)));
  }
  var q: mat4x4<f32>;
  for (var r = 0u; r < 4u; r++) {
    let i = base[r] + k * s;
    q[r] = vec4<f32>(ld(x, i), ld(x, i + s), ld(x, i + 2u * s), ld(x, i + 3u * s));
  }
  return q;
}

// Write rows m0.. of a block (acc[r] = C[m0 + r, n0 .. n0 + 3]) plus bias, inside C only.
fn store(z: u32, m0: u32, n0: u32, acc: ptr<function, array<vec4<f32>, TM>>, rows: u32) {
  if (n0 >= p.N) {
    return;
  }
  let cols = min(4u, p.N - n0);
  let bv = vec4<f32>(biasAt(n0), biasAt(min(n0 + 1u, p.N - 1u)), biasAt(min(n0 + 2u, p.N - 1u)), biasAt(min(n0 + 3u, p.N - 1u)));
  for (var r = 0u; r < rows; r++) {
    if (m0 + r < p.M) {
      stC(z * p.M * p.N + (m0 + r) * p.N + n0, (*acc)[r] + bv, cols);
    }
  }
}
