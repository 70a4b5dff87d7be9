import { describe, expect, test } from "bun:test";
import { defineKernel, defineLibrary, GpuError, WgslError } from "../../src/gpu/index.ts";
import { sizeClass } from "../../src/gpu/pool.ts";
import { getGpu } from "../helpers.ts";

// Line 6 holds the error (an undeclared identifier); the f16 prefix must not shift line numbers.
const BAD = `struct Params { n: u32 }
@group(0) @binding(0) var<storage, read_write> x: array<{{T}}>;
@group(1) @binding(0) var<uniform> p: Params;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x < p.n) {
    x[g.x] = undeclared_thing + {{T}}(1);
  }
}
`;

const SUBGROUPS = (await getGpu()).features.has("subgroups");

describe("kernels", () => {
  test("a bad WGSL kernel reports its file and line (compiled eagerly)", async () => {
    const gpu = await getGpu();
    const k = defineKernel("kernels/test_bad.wgsl", BAD);
    for (const T of ["f32", ...(gpu.features.has("shader-f16") ? ["f16"] : [])]) {
      const err = await gpu.compile(k, "main", ["x"], { T }).catch((e) => e);
      expect(err).toBeInstanceOf(WgslError);
      expect(err.file).toBe("kernels/test_bad.wgsl");
      expect(err.line).toBe(6);
      expect(err.message).toContain("kernels/test_bad.wgsl:6:");
      expect(err.message).toContain("undeclared_thing");
    }
  });

  test("a library appended to kernels: bindings and params reflected, errors name the library's file and line", async () => {
    const gpu = await getGpu();
    // The library declares the bindings and a helper; line 3 of the library holds an error in the bad one.
    const LIB = `struct Params { n: u32, scale: f32 }\n@group(0) @binding(0) var<storage, read_write> x: array<f32>;\n@group(1) @binding(0) var<uniform> p: Params;\nfn twice(v: f32) -> f32 { return {{TWICE:2.0 * v}}; }\n`;
    const lib = defineLibrary("kernels/lib_test.wgsl", LIB);
    const k = defineKernel("kernels/uses_lib.wgsl", `// two lines of the kernel\n@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) { if (g.x < p.n) { x[g.x] = twice(x[g.x]) * p.scale; } }`, [lib]);
    expect([...k.storage.keys()]).toEqual(["x"]);
    expect(k.params.map((f) => f.name)).toEqual(["n", "scale"]);
    const buf = gpu.upload(new Float32Array([1, 2, 3, 4]));
    gpu.dispatch(k, "main", { x: buf }, 1, { params: { n: 3, scale: 0.5 } });
    expect([...new Float32Array(await gpu.read(buf, 16))]).toEqual([1, 2, 3, 4]);
    gpu.release(buf);
    // An error inside the library (its line 4) is reported against the library, not the kernel.
    const err = await gpu.compile(k, "main", ["x"], { TWICE: "2.0 * undeclared_in_lib" }).catch((e) => e);
    expect(err).toBeInstanceOf(WgslError);
    expect(err.file).toBe("kernels/lib_test.wgsl");
    expect(err.line).toBe(4);
    // An error on the kernel's own line 2 still names the kernel.
    const k2 = defineKernel("kernels/uses_lib2.wgsl", `// one line\n@compute @workgroup_size(1) fn main() { x[0] = nope; }`, [lib]);
    const err2 = await gpu.compile(k2, "main").catch((e) => e);
    expect(err2.message).toStartWith("kernels/uses_lib2.wgsl:2:");
    // A convention break inside a library names the library's line; enable directives belong to the kernel.
    const badLib = defineLibrary("kernels/lib_bad.wgsl", "fn f() {}\n@group(2) @binding(0) var<storage, read> y: array<f32>;\n");
    expect(() => defineKernel("kernels/k.wgsl", "@compute @workgroup_size(1) fn main() {}", [badLib])).toThrow("kernels/lib_bad.wgsl:2:");
    expect(() => defineLibrary("kernels/lib_enable.wgsl", "enable subgroups;\nfn f() {}")).toThrow("kernels/lib_enable.wgsl:1:");
  });

  test("a library that needs another brings it along, each library appended once (errors still name its file)", async () => {
    const gpu = await getGpu();
    const base = defineLibrary("kernels/lib_base.wgsl", "fn base(v: f32) -> f32 { return {{BASE:v + 1.0}}; }\n");
    const mid = defineLibrary("kernels/lib_mid.wgsl", "@group(0) @binding(0) var<storage, read_write> x: array<f32>;\nfn mid(v: f32) -> f32 { return base(v) * 2.0; }\n", [base]);
    const src = "@compute @workgroup_size(1) fn main() { x[0] = mid(x[0]) + base(0.0); }";
    // Named by the kernel too, and twice: a WGSL redeclaration would fail to compile.
    for (const libs of [[mid], [mid, base], [base, mid, base]]) {
      const k = defineKernel("kernels/uses_needs.wgsl", src, libs);
      expect(k.parts.map((p) => p.file)).toEqual(["kernels/uses_needs.wgsl", ...(libs[0] === base ? [base.file, mid.file] : [mid.file, base.file])]);
      const buf = gpu.upload(new Float32Array([3]));
      gpu.dispatch(k, "main", { x: buf }, 1);
      expect([...new Float32Array(await gpu.read(buf, 4))]).toEqual([9]); // (3 + 1) * 2 + 1
      gpu.release(buf);
    }
    const err = await gpu.compile(defineKernel("kernels/uses_needs.wgsl", src, [mid]), "main", ["x"], { BASE: "v + nope" }).catch((e) => e);
    expect(err).toBeInstanceOf(WgslError);
    expect(err.file).toBe("kernels/lib_base.wgsl");
    expect(err.line).toBe(1);
  });

  test("//#if blocks choose code by a define, keep line numbers, and report unbalanced directives", async () => {
    const gpu = await getGpu();
    const src = [
      "@group(0) @binding(0) var<storage, read_write> x: array<f32>;", // 1
      "fn v() -> f32 {", // 2
      "//#if BIG", // 3
      "  return 100.0;", // 4
      "//#else", // 5
      "//#if NESTED", // 6
      "  return 7.0;", // 7
      "//#else", // 8
      "  return 3.0;", // 9
      "//#endif", // 10
      "//#endif", // 11
      "}", // 12
      "@compute @workgroup_size(1) fn main() { x[0] = v(); }", // 13
    ].join("\n");
    const k = defineKernel("kernels/cond.wgsl", src);
    const run = async (defines: Record<string, string | number>) => {
      const b = gpu.alloc(16);
      gpu.dispatch(k, "main", { x: b }, 1, { defines });
      const v = new Float32Array(await gpu.read(b, 4))[0];
      gpu.release(b);
      return v;
    };
    expect(await run({ BIG: 1 })).toBe(100);
    expect(await run({ BIG: 0, NESTED: "true" })).toBe(7);
    expect(await run({ NESTED: "" })).toBe(3);
    expect(await run({ BIG: "false", NESTED: 0 })).toBe(3);
    // Line numbers survive: an error on line 13 of the file after a blanked block.
    const bad = defineKernel("kernels/cond_bad.wgsl", src.replace("x[0] = v();", "x[0] = v() + nope;"));
    const err = await gpu.compile(bad, "main", ["x"], { BIG: 1 }).catch((e) => e);
    expect(err.message).toStartWith("kernels/cond_bad.wgsl:13:");
    // Unbalanced directives name their line.
    const unclosed = defineKernel("kernels/cond_open.wgsl", "//#if A\n@compute @workgroup_size(1) fn main() {}");
    expect(() => gpu.compile(unclosed, "main", [])).toThrow("kernels/cond_open.wgsl:1:1: //#if without //#endif");
    const stray = defineKernel("kernels/cond_stray.wgsl", "@compute @workgroup_size(1) fn main() {}\n//#endif");
    expect(() => gpu.compile(stray, "main", [])).toThrow("kernels/cond_stray.wgsl:2:1: //#endif without a matching //#if");
  });

  test.skipIf(!SUBGROUPS)("a kernel calling subgroup builtins gets enable subgroups (needs the subgroups feature)", async () => {
    const gpu = await getGpu();
    const k = defineKernel("kernels/sg.wgsl", "@group(0) @binding(0) var<storage, read_write> x: array<u32>;\n@compute @workgroup_size(1) fn main(@builtin(subgroup_size) n: u32) { x[0] = n + subgroupAdd(0u); }");
    const b = gpu.alloc(16);
    gpu.dispatch(k, "main", { x: b }, 1);
    const n = new Uint32Array(await gpu.read(b, 4))[0];
    gpu.release(b);
    expect(n).toBeGreaterThanOrEqual(gpu.adapter.subgroupMinSize || 1);
    expect(n).toBeLessThanOrEqual(gpu.adapter.subgroupMaxSize || 128);
  });

  test("a bad kernel dispatched without compiling first fails at the next sync with file and line", async () => {
    const gpu = await getGpu();
    const k = defineKernel("kernels/test_bad2.wgsl", BAD);
    const buf = gpu.alloc(256);
    gpu.dispatch(k, "main", { x: buf }, 1, { params: { n: 64 }, defines: { T: "f32" } });
    const err = await gpu.sync().catch((e) => e);
    gpu.release(buf);
    expect(err).toBeInstanceOf(WgslError);
    expect(err.message).toStartWith("kernels/test_bad2.wgsl:6:");
    // The queue recovers: the next batch runs normally.
    await gpu.sync();
  });

  test("kernel conventions and call-site mistakes are reported before anything runs", async () => {
    const gpu = await getGpu();
    expect(() => defineKernel("kernels/x.wgsl", "@group(0) @binding(0) var<uniform> u: f32;\n@compute @workgroup_size(1) fn main() {}")).toThrow(
      /kernels\/x\.wgsl:1:1: binding 'u' breaks the kernel convention/,
    );
    expect(() => defineKernel("kernels/y.wgsl", "struct P { v: vec2<f32> }\n@group(1) @binding(0) var<uniform> p: P;\n@compute @workgroup_size(1) fn main() {}")).toThrow(
      /must be a 32-bit scalar/,
    );
    const k = defineKernel(
      "kernels/ok.wgsl",
      "struct P { n: u32, s: f32 }\n@group(0) @binding(0) var<storage, read_write> y: array<f32>;\n@group(1) @binding(0) var<uniform> p: P;\n@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) { if (g.x < p.n) { y[g.x] = p.s; } }",
    );
    expect(k.params.map((f) => `${f.name}:${f.type}`)).toEqual(["n:u32", "s:f32"]);
    const b = gpu.alloc(64);
    expect(() => gpu.dispatch(k, "main", { nope: b }, 1, { params: { n: 1, s: 1 } })).toThrow(/no storage binding 'nope' \(it has: y\)/);
    expect(() => gpu.dispatch(k, "main", { y: b }, 1, { params: { n: 1 } })).toThrow(/missing params\.s/);
    expect(() => gpu.dispatch(k, "main", { y: b }, 1, { params: { n: 1.5, s: 1 } })).toThrow(/must be an integer/);
    expect(() => gpu.dispatch(k, "main", { y: b }, 1, { params: { n: 1, s: 1, z: 2 } })).toThrow(/has no param 'z'/);
    expect(() => gpu.dispatch(k, "nomain", { y: b }, 1, { params: { n: 1, s: 1 } })).toThrow(/no entry point 'nomain'/);
    expect(() => gpu.dispatch(k, "main", { y: b }, 70000, { params: { n: 1, s: 1 } })).toThrow(GpuError);
    gpu.release(b);
    await gpu.sync();
  });

  test("pipelines are cached per specialization", async () => {
    const gpu = await getGpu();
    const k = defineKernel(
      "kernels/spec.wgsl",
      "@group(0) @binding(0) var<storage, read_write> y: array<f32>;\noverride V: f32 = 1.0;\n@compute @workgroup_size(1) fn main() { y[0] = V * {{S}}; }",
    );
    const b = gpu.alloc(4);
    const before = gpu.pipelines.compiles;
    for (let i = 0; i < 5; i++) {
      gpu.dispatch(k, "main", { y: b }, 1, { defines: { S: "2.0" }, constants: { V: 3 } });
      gpu.dispatch(k, "main", { y: b }, 1, { defines: { S: "5.0" }, constants: { V: 3 } });
    }
    expect(new Float32Array(await gpu.read(b))[0]).toBe(15);
    gpu.dispatch(k, "main", { y: b }, 1, { defines: { S: "2.0" }, constants: { V: 4 } });
    expect(new Float32Array(await gpu.read(b))[0]).toBe(8);
    expect(gpu.pipelines.compiles - before).toBe(3);
    gpu.release(b);
  });

  test("size classes: never smaller than asked, at most 25% slack above 4 KiB", () => {
    for (let n = 1; n < 1 << 26; n = Math.ceil(n * 1.37) + 1) {
      const c = sizeClass(n);
      expect(c).toBeGreaterThanOrEqual(n);
      if (n > 4096) expect(c / n).toBeLessThanOrEqual(1.25);
      expect(c % 4).toBe(0);
    }
  });
});

describe("kernel reflection", () => {
  test("comments are ignored: commas in field comments, commented-out bindings", () => {
    const k = defineKernel(
      "kernels/comments.wgsl",
      `struct P {
  n: u32,   // count, in elements
  /* scale, applied last */ s: f32,
}
// @group(0) @binding(5) var<storage, read> ghost: array<f32>;
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(1) @binding(0) var<uniform> p: P;
@compute @workgroup_size(1) fn main() { y[0] = p.s; }`,
    );
    expect(k.params.map((f) => f.name)).toEqual(["n", "s"]);
    expect([...k.storage.keys()]).toEqual(["y"]);
  });
});
