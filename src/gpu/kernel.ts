/**
 * Kernels: WGSL text from `kernels/`, reflected, specialized and compiled once per specialization.
 *
 * A kernel file is imported as text (`import src from "../../kernels/x.wgsl" with { type: "text" }`) so
 * `bun build --compile` carries it, and wrapped with `defineKernel("kernels/x.wgsl", src)`. It may hold
 * several entry points (an op's forward and backward live in one file).
 *
 * Conventions every kernel follows (checked here, so a broken kernel fails loudly and early):
 *   - storage buffers live in `@group(0)`; the caller binds them by variable name;
 *   - scalar parameters live in one uniform struct at `@group(1) @binding(0)`, made only of 32-bit scalars
 *     (u32/i32/f32); the caller passes them by field name, and they travel through the queue's uniform ring;
 *   - specialization is either WGSL `override` constants (`constants`, no recompile of the text) or
 *     `{{NAME}}` placeholders (`defines`, e.g. the element type), replaced within their line so WGSL
 *     line numbers stay those of the file. A kernel using f16 gets `enable f16;` prepended on line 1;
 *   - `//#if NAME`, `//#else`, `//#endif` lines choose code by a define (true unless absent, 0, false or
 *     empty); the lines left out become blank lines, so line numbers stay those of the file. This is how a
 *     kernel keeps a variant that needs a device feature (subgroups) without breaking devices that lack it;
 *   - a kernel whose specialized code calls subgroup builtins gets `enable subgroups;` on line 1 (as f16);
 *   - code shared by several kernel files (WGSL has no include) lives in a library file, `defineLibrary`,
 *     and is appended after the kernel's own text (`defineKernel(file, src, [LIB])`): the kernel's lines keep
 *     their numbers, and an error in the appended part names the library file and its own line. A library
 *     that calls another names it (`defineLibrary(file, src, [NEEDED])`); each library is appended once.
 */
import { GpuError, WgslError, wgslDiagnostics } from "./errors.ts";

export type ScalarType = "u32" | "i32" | "f32";

export interface BindingInfo {
  name: string;
  binding: number;
  access: "read" | "read_write";
}

/** A piece of WGSL with the file it came from: a kernel's own text, or a library appended to it. */
export interface WgslPart {
  readonly file: string;
  readonly code: string;
  /** Libraries this one calls: appended with it (each library once per kernel, whoever names it). */
  readonly needs?: readonly WgslPart[];
}

export interface KernelSource {
  /** Path shown in errors, relative to the repo root (`kernels/norm.wgsl`). */
  readonly file: string;
  /** The kernel's text followed by its libraries' (one line break between parts). */
  readonly code: string;
  /** Where each part starts in `code`: line numbers map back to (file, line) through these. */
  readonly parts: readonly { file: string; firstLine: number }[];
  /** Storage bindings of group 0, by variable name. */
  readonly storage: ReadonlyMap<string, BindingInfo>;
  /** Fields of the uniform params struct (group 1, binding 0), in order; empty when the kernel has none. */
  readonly params: readonly { name: string; type: ScalarType }[];
  /**
   * Every params field set to 0: entries of one file share its struct, so a dispatch spreads this first and
   * sets the fields its entry reads (`{ ...K.zeroParams, n, row }`). Missing fields stay an error otherwise.
   */
  readonly zeroParams: Readonly<Record<string, number>>;
  readonly entryPoints: readonly string[];
}

export type Defines = Record<string, string | number>;
export type Constants = Record<string, number>;

const BINDING_RE = /@group\((\d+)\)\s*@binding\((\d+)\)\s*var(?:<\s*(storage|uniform)\s*(?:,\s*(read|read_write)\s*)?>)?\s+(\w+)\s*:\s*([\w<>, ]+)/g;

/** The code with comments blanked out (newlines kept, so indices and line numbers still match). */
function stripComments(code: string): string {
  return code.replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, (c) => c.replace(/[^\n]/g, " "));
}

/**
 * WGSL shared by kernel files (helpers, bindings, a params struct); it has no entry point of its own. `needs`: the
 * libraries it calls (kernels/row_reduce.wgsl needs kernels/nan.wgsl), appended with it.
 */
export function defineLibrary(file: string, source: string, needs: readonly WgslPart[] = []): WgslPart {
  if (/\benable\s+\w+\s*;/.test(stripComments(source))) throw new WgslError(file, 1, 1, "a library cannot hold enable directives (they must come first: put them in the kernel file)");
  return { file, code: source, needs };
}

/** The libraries in the order given, each followed by what it needs that is not there yet; each file once. */
function withNeeds(libraries: readonly WgslPart[]): WgslPart[] {
  const out: WgslPart[] = [];
  const add = (lib: WgslPart) => {
    if (out.some((l) => l.file === lib.file)) return;
    out.push(lib);
    for (const n of lib.needs ?? []) add(n);
  };
  for (const lib of libraries) add(lib);
  return out;
}

/** (file, line) of line `line` of a kernel's combined code. */
export function locate(k: Pick<KernelSource, "parts">, line: number): { file: string; line: number } {
  let part = k.parts[0]!;
  for (const p of k.parts) if (p.firstLine <= line) part = p;
  return { file: part.file, line: line - part.firstLine + 1 };
}

export function defineKernel(file: string, source: string, libraries: readonly WgslPart[] = []): KernelSource {
  const storage = new Map<string, BindingInfo>();
  let paramsType: string | undefined;
  const parts = [{ file, firstLine: 1 }];
  let full = source;
  for (const lib of withNeeds(libraries)) {
    full += "\n";
    parts.push({ file: lib.file, firstLine: lineOf(full, full.length) });
    full += lib.code;
  }
  const where = (index: number) => locate({ parts }, lineOf(code, index));
  const err = (index: number, msg: string) => {
    const w = where(index);
    return new WgslError(w.file, w.line, 1, msg);
  };
  const code = stripComments(full);
  for (const m of code.matchAll(BINDING_RE)) {
    const [, group, binding, space, access, name, type] = m;
    if (group === "0" && space === "storage") {
      storage.set(name!, { name: name!, binding: Number(binding), access: access === "read_write" ? "read_write" : "read" });
    } else if (group === "1" && binding === "0" && space === "uniform") {
      paramsType = type!.trim();
    } else {
      throw err(m.index!, `binding '${name}' breaks the kernel convention: storage buffers in @group(0), one uniform params struct at @group(1) @binding(0)`);
    }
  }
  const params: { name: string; type: ScalarType }[] = [];
  if (paramsType) {
    const sm = new RegExp(`struct\\s+${paramsType}\\s*\\{([^}]*)\\}`).exec(code);
    if (!sm) throw new WgslError(file, 1, 1, `uniform params struct '${paramsType}' not found`);
    const structAt = sm.index;
    for (const f of sm[1]!.split(/[,;\n]/)) {
      const fm = /^\s*(?:@\w+(?:\([^)]*\))?\s*)*(\w+)\s*:\s*([\w<>]+)\s*$/.exec(f);
      if (!fm) {
        if (f.trim()) throw err(structAt, `cannot read params field '${f.trim()}'`);
        continue;
      }
      const t = fm[2]!;
      if (t !== "u32" && t !== "i32" && t !== "f32")
        throw err(structAt, `params field '${fm[1]}: ${t}' must be a 32-bit scalar (u32, i32, f32)`);
      params.push({ name: fm[1]!, type: t });
    }
  }
  const entryPoints = [...code.matchAll(/@compute[\s\S]*?fn\s+(\w+)/g)].map((m) => m[1]!);
  if (entryPoints.length === 0) throw new WgslError(file, 1, 1, "no @compute entry point");
  const zeroParams = Object.freeze(Object.fromEntries(params.map((f) => [f.name, 0])));
  return { file, code: full, parts, storage, params, zeroParams, entryPoints };
}

/** Order-independent cache key of a defines/constants object. */
function canonical(o: Record<string, unknown>): string {
  return JSON.stringify(Object.keys(o).sort().map((k) => [k, o[k]]));
}

function lineOf(code: string, index: number): number {
  let n = 1;
  for (let i = 0; i < index; i++) if (code.charCodeAt(i) === 10) n++;
  return n;
}

const truthy = (v: string | number | undefined): boolean => v !== undefined && v !== 0 && v !== "0" && v !== "false" && v !== "";

/** Resolve `//#if NAME` / `//#else` / `//#endif` (nestable), blanking the lines that are left out. */
function conditionals(k: KernelSource, defines: Defines): string {
  const lines = k.code.split("\n");
  const stack: { keep: boolean; line: number; sawElse: boolean }[] = [];
  const live = () => stack.every((f) => f.keep);
  const fail = (i: number, msg: string) => {
    const w = locate(k, i + 1);
    return new WgslError(w.file, w.line, 1, msg);
  };
  for (let i = 0; i < lines.length; i++) {
    const m = /^\s*\/\/#(if|else|endif)\b\s*(\w*)\s*$/.exec(lines[i]!);
    if (m) {
      if (m[1] === "if") {
        if (!m[2]) throw fail(i, "//#if needs a define name");
        stack.push({ keep: truthy(defines[m[2]]), line: i, sawElse: false });
      } else if (m[1] === "else") {
        const top = stack[stack.length - 1];
        if (!top || top.sawElse) throw fail(i, "//#else without a matching //#if");
        top.keep = !top.keep;
        top.sawElse = true;
      } else if (!stack.pop()) throw fail(i, "//#endif without a matching //#if");
      lines[i] = "";
    } else if (!live()) lines[i] = "";
  }
  if (stack.length) throw fail(stack[stack.length - 1]!.line, "//#if without //#endif");
  return lines.join("\n");
}

/**
 * Resolve `//#if` blocks, then replace `{{NAME}}` / `{{NAME:default}}` placeholders line-preservingly (a
 * default serves entry points that do not use the placeholder); prepend `enable f16;` / `enable subgroups;`
 * on line 1 when the code uses them.
 */
export function specialize(k: KernelSource, defines: Defines = {}): string {
  let code = conditionals(k, defines).replace(/\{\{(\w+)(?::([^}]*))?\}\}/g, (_, name: string, dflt: string | undefined) => {
    if (!(name in defines) && dflt === undefined)
      throw new WgslError(k.file, 1, 1, `placeholder {{${name}}} has no value (defines: ${Object.keys(defines).join(", ") || "none"})`);
    const v = String(name in defines ? defines[name] : dflt);
    if (v.includes("\n")) throw new GpuError(`define ${name} for ${k.file} must be one line`);
    return v;
  });
  const live = stripComments(code);
  if (/\bf16\b/.test(live) && !/enable\s+f16\s*;/.test(live)) code = "enable f16; " + code;
  if (/\bsubgroup[A-Z]\w*\s*\(|\bsubgroup_(invocation_id|size)\b/.test(live) && !/enable\s+subgroups\s*;/.test(live)) code = "enable subgroups; " + code;
  return code;
}

/**
 * Turn Dawn's WGSL error text (`:3:2 error: unresolved value 'y'`) into a WgslError naming the file (the
 * kernel's, or the library's the line falls in) and the line within it.
 */
export function wgslErrorFrom(k: Pick<KernelSource, "file" | "parts">, entry: string, message: string): WgslError {
  const d = wgslDiagnostics(message).find((x) => x.type === "error");
  if (d) {
    const snippet = message.split("\n").slice(1, 3).join("\n");
    const w = locate(k, d.line);
    return new WgslError(w.file, w.line, d.column, `error: ${d.text}${snippet.trim() ? "\n" + snippet : ""}`);
  }
  return new WgslError(k.file, 1, 1, `${entry}: ${message.split("\n")[0]}`);
}

export interface CompiledKernel {
  readonly key: string;
  readonly source: KernelSource;
  readonly entry: string;
  readonly pipeline: GPUComputePipeline;
  readonly storageLayout: GPUBindGroupLayout;
  /** Storage binding names in binding order, as this pipeline's layout has them. */
  readonly bindingNames: readonly string[];
  /** Resolves when Dawn has validated the module and pipeline; rejects with a WgslError. */
  readonly ready: Promise<void>;
  /** Numeric id for bind-group cache keys. */
  readonly id: number;
}

/**
 * The pipeline cache: one compiled pipeline per (file, entry point, defines, constants, bound names).
 * Pipelines are created synchronously, so ops can record without awaiting; Dawn's verdict arrives through
 * an error scope as `ready`, which the queue awaits at its next flush (or a caller awaits to compile eagerly).
 */
export class PipelineCache {
  private cache = new Map<string, CompiledKernel>();
  private modules = new Map<string, GPUShaderModule>();
  private nextId = 1;
  readonly paramsLayout: GPUBindGroupLayout;
  compiles = 0;

  constructor(private readonly device: GPUDevice) {
    this.paramsLayout = device.createBindGroupLayout({
      label: "params",
      entries: [{ binding: 0, visibility: 4 /* COMPUTE */, buffer: { type: "uniform", hasDynamicOffset: true, minBindingSize: 0 } }],
    });
  }

  get size(): number {
    return this.cache.size;
  }

  get(source: KernelSource, entry: string, names: readonly string[], defines: Defines = {}, constants: Constants = {}): CompiledKernel {
    const key = `${source.file}#${entry}|${canonical(defines)}|${canonical(constants)}|${names.join(",")}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    if (!source.entryPoints.includes(entry))
      throw new GpuError(`${source.file} has no entry point '${entry}' (it has: ${source.entryPoints.join(", ")})`);
    const code = specialize(source, defines);
    const modKey = `${source.file}|${canonical(defines)}`;
    const d = this.device;
    d.pushErrorScope("validation");
    let module = this.modules.get(modKey);
    if (!module) {
      module = d.createShaderModule({ label: source.file, code });
      this.modules.set(modKey, module);
    }
    const storageLayout = d.createBindGroupLayout({
      label: `${source.file}#${entry}`,
      entries: names.map((n) => {
        const b = source.storage.get(n)!;
        return { binding: b.binding, visibility: 4, buffer: { type: b.access === "read" ? "read-only-storage" : "storage" } };
      }),
    });
    const layouts = [storageLayout];
    if (source.params.length) layouts.push(this.paramsLayout);
    const pipeline = d.createComputePipeline({
      label: `${source.file}#${entry}`,
      layout: d.createPipelineLayout({ bindGroupLayouts: layouts }),
      compute: { module, entryPoint: entry, constants },
    });
    const ready = d.popErrorScope().then((err) => {
      if (err) throw wgslErrorFrom(source, entry, err.message);
    });
    ready.catch(() => {}); // observed by the queue or by the caller; never an unhandled rejection
    this.compiles++;
    const ck: CompiledKernel = { key, source, entry, pipeline, storageLayout, bindingNames: names, ready, id: this.nextId++ };
    this.cache.set(key, ck);
    return ck;
  }
}
