// Shared by the parser fuzz tests (test/io/fuzz.test.ts, test/data/tokenizer_fuzz.test.ts): seeded mutations
// of JSON documents and of bytes, an allocation cap that watches every typed array, ArrayBuffer and Array a
// parser creates, and a runner that calls a parser on each mutation and collects every outcome that is not
// "accepted" or "refused with the module's error class": another exception type, an allocation out of
// proportion to the input, a write into the input's directory, a slow case.
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { mulberry32 } from "../src/tensor/rng.ts";

export { mulberry32 as rng };

/** A test's seed, moved by ALIGNX_FUZZ_SEED (an integer) to explore other mutations than CI's fixed ones. */
export const seed = (base: number): number => base + Number(process.env.ALIGNX_FUZZ_SEED ?? 0);

/** A random integer in [0, n). */
export const below = (rand: () => number, n: number): number => Math.floor(rand() * n);
export const pick = <T>(rand: () => number, xs: readonly T[]): T => xs[below(rand, xs.length)]!;

// ---- mutations --------------------------------------------------------------------------------------------

/** Values that break parsers: wrong types, boundaries (0, -1, 2^31, 2^32, 2^53), huge and fractional numbers. */
export const INTERESTING: readonly unknown[] = [
  null, true, false, 0, -0, 1, 2, 3, 4, 6, 7, 8, -1, -100, 0.5, 1.5, 1e-9, 255, 256, 65535, 65536,
  2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 1e9, 1e15, 1e20, 1e300, -1e300,
  "", " ", "x", "0", "1", "-1", "1e9", "a b", "a  b", "\u0000", "\uFFFD", "é", "null", "true", "__proto__", "constructor",
  [], [0], [1], [-1], [0, 0], [1, 2], [2, 1], [0, 1e15], [1, 2, 3], [[]], [[1]], [null], ["a", "b"], ["a"], [1, "b"],
  {}, { a: 1 }, { type: "x" }, { __proto__: null }, [{}],
];

/** A JSON-able value; objects and arrays are mutated in place on a deep copy. */
type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every container in `doc` with its keys: where a mutation can land. */
function containers(doc: Json): { node: Json[] | Record<string, Json>; keys: (string | number)[] }[] {
  const out: { node: Json[] | Record<string, Json>; keys: (string | number)[] }[] = [];
  const walk = (v: Json) => {
    if (Array.isArray(v)) {
      out.push({ node: v, keys: v.map((_, i) => i) });
      for (const x of v) walk(x);
    } else if (v !== null && typeof v === "object") {
      out.push({ node: v, keys: Object.keys(v) });
      for (const x of Object.values(v)) walk(x);
    }
  };
  walk(doc);
  return out;
}

/** A nearby or extreme variant of a number. */
function tweakNumber(rand: () => number, x: number): unknown {
  switch (below(rand, 9)) {
    case 0: return x + 1;
    case 1: return x - 1;
    case 2: return -x;
    case 3: return x * 2;
    case 4: return x * 1e9;
    case 5: return x + 0.5;
    case 6: return 0;
    case 7: return String(x);
    default: return pick(rand, INTERESTING);
  }
}

/**
 * One seeded structural mutation of a JSON document, as text: replace a value (any depth) by an interesting one,
 * tweak a number or a string, delete or add a key, drop, repeat or reorder array elements, repeat a key in the
 * text (JSON.parse keeps the last), or damage the text's bytes. `keys` are names worth adding (the format's own
 * field names), `values` extra values worth putting anywhere.
 */
export function mutateJson(rand: () => number, base: Json, opts: { keys?: readonly string[]; values?: readonly unknown[] } = {}): { text: string; what: string } {
  const doc = structuredClone(base);
  const values = [...INTERESTING, ...(opts.values ?? [])];
  const keys = [...(opts.keys ?? []), "x", "", "__metadata__", "__proto__"];
  const n = 1 + (rand() < 0.25 ? below(rand, 3) : 0);
  const what: string[] = [];
  let root: Json = doc;
  for (let m = 0; m < n; m++) {
    const cs = containers(root);
    const kind = below(rand, 10);
    if (kind === 0 && m === 0) {
      root = structuredClone(pick(rand, values)) as Json;
      what.push("root replaced");
      continue;
    }
    if (cs.length === 0) continue;
    const c = pick(rand, cs);
    const arr = Array.isArray(c.node);
    const k = c.keys.length ? pick(rand, c.keys) : undefined;
    const get = () => (c.node as Record<string | number, Json>)[k as string];
    const set = (v: unknown) => ((c.node as Record<string | number, Json>)[k as string] = structuredClone(v) as Json);
    if (kind <= 3 && k !== undefined) {
      set(pick(rand, values));
      what.push(`${String(k)} := value`);
    } else if (kind === 4 && k !== undefined) {
      const v = get();
      if (typeof v === "number") set(tweakNumber(rand, v));
      else if (typeof v === "string") set(pick(rand, [v + " ", v.slice(1), v.toUpperCase(), `${v}${v}`, v.split("").reverse().join(""), "", `${v}\u0000`]));
      else set(pick(rand, values));
      what.push(`${String(k)} tweaked`);
    } else if (kind === 5 && k !== undefined) {
      if (arr) (c.node as Json[]).splice(k as number, 1);
      else delete (c.node as Record<string, Json>)[k as string];
      what.push(`${String(k)} deleted`);
    } else if (kind === 6) {
      if (arr) (c.node as Json[]).splice(below(rand, (c.node as Json[]).length + 1), 0, structuredClone(k !== undefined && rand() < 0.5 ? get() : pick(rand, values)) as Json);
      else (c.node as Record<string, Json>)[pick(rand, keys)] = structuredClone(pick(rand, values)) as Json;
      what.push("added");
    } else if (kind === 7 && arr && (c.node as Json[]).length > 1) {
      const a = c.node as Json[];
      const i = below(rand, a.length), j = below(rand, a.length);
      [a[i], a[j]] = [a[j]!, a[i]!];
      what.push("swapped");
    } else if (kind === 8 && k !== undefined && !arr) {
      // Move a subtree somewhere else (a valid-looking value in the wrong place).
      const other = pick(rand, cs);
      const ok = other.keys.length ? pick(rand, other.keys) : undefined;
      if (ok !== undefined) (other.node as Record<string | number, Json>)[ok as string] = structuredClone(get());
      what.push("moved");
    } else if (k !== undefined) {
      set(pick(rand, values));
      what.push(`${String(k)} := value`);
    }
  }
  let text = JSON.stringify(root) ?? "null";
  const r = rand();
  if (r < 0.08) {
    // A key given twice: copy the first `"key":value` pair of some object right after itself.
    const m = /([{,])("(?:[^"\\]|\\.)*":(?:-?[\d.eE+-]+|"(?:[^"\\]|\\.)*"|true|false|null))/g;
    const hits = [...text.matchAll(m)];
    if (hits.length) {
      const h = pick(rand, hits);
      const at = h.index! + h[0].length;
      text = `${text.slice(0, at)},${h[2]}${text.slice(at)}`;
      what.push("key repeated");
    }
  } else if (r < 0.18) {
    const b = mutateBytes(rand, new TextEncoder().encode(text));
    text = new TextDecoder().decode(b.bytes);
    what.push(b.what);
  }
  return { text, what: what.join("; ") || "unchanged" };
}

/** One random byte-level mutation: flip 1-4 bytes, truncate, insert 1-8 random bytes, or cut a range out. */
export function mutateBytes(rand: () => number, good: Uint8Array): { bytes: Uint8Array; what: string } {
  const kind = below(rand, 4);
  if (kind === 0 && good.length) {
    const bytes = good.slice();
    const at = Array.from({ length: 1 + below(rand, 4) }, () => below(rand, good.length));
    for (const i of at) bytes[i]! ^= 1 + below(rand, 255);
    return { bytes, what: `flip at ${at.join(", ")}` };
  }
  if (kind === 1) {
    const n = below(rand, good.length);
    return { bytes: good.slice(0, n), what: `truncate to ${n}` };
  }
  if (kind === 2 && good.length) {
    const a = below(rand, good.length);
    const b = Math.min(good.length, a + 1 + below(rand, 16));
    const bytes = new Uint8Array(good.length - (b - a));
    bytes.set(good.subarray(0, a));
    bytes.set(good.subarray(b), a);
    return { bytes, what: `cut ${a}..${b}` };
  }
  const at = below(rand, good.length + 1);
  const extra = Uint8Array.from({ length: 1 + below(rand, 8) }, () => below(rand, 256));
  const bytes = new Uint8Array(good.length + extra.length);
  bytes.set(good.subarray(0, at));
  bytes.set(extra, at);
  bytes.set(good.subarray(at), at + extra.length);
  return { bytes, what: `insert ${extra.length} at ${at}` };
}

// ---- the allocation cap -----------------------------------------------------------------------------------

const WATCHED = [
  "ArrayBuffer", "SharedArrayBuffer", "Uint8Array", "Int8Array", "Uint8ClampedArray", "Uint16Array", "Int16Array", "Uint32Array",
  "Int32Array", "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array", "Array",
] as const;

/** Bytes a constructor call asks for (elements × element size; an Array's slot counted as 8 bytes). */
function requested(name: string, args: unknown[]): number {
  const a0 = args[0];
  const per = name === "ArrayBuffer" || name === "SharedArrayBuffer" ? 1 : name === "Array" ? 8 : ((globalThis as Record<string, unknown>)[name] as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
  if (typeof a0 === "number") return name === "Array" && args.length !== 1 ? args.length * 8 : a0 * per;
  if (a0 instanceof ArrayBuffer || a0 instanceof SharedArrayBuffer) return 0; // a view: no new memory
  if (a0 !== null && typeof a0 === "object" && "length" in a0 && typeof (a0 as { length: unknown }).length === "number")
    return (a0 as { length: number }).length * per;
  return 0;
}

/**
 * Run `fn` with every typed-array, ArrayBuffer and Array constructor watched (the globals replaced by proxies,
 * so `instanceof` and the static methods keep working): a request of more than `capBytes` is recorded (and
 * still served, so the parser runs on). Returns fn's result and the largest request.
 */
export async function withAllocationCap<T>(capBytes: number, fn: () => Promise<T>): Promise<{ result?: T; error?: unknown; largest: number; over: string | null }> {
  const g = globalThis as Record<string, unknown>;
  const saved = new Map<string, unknown>();
  let largest = 0;
  let over: string | null = null;
  for (const name of WATCHED) {
    const Orig = g[name] as new (...a: unknown[]) => object;
    if (typeof Orig !== "function") continue;
    saved.set(name, Orig);
    const proxy: unknown = new Proxy(Orig, {
      construct(target, args, newTarget) {
        const bytes = requested(name, args);
        if (bytes > largest) largest = bytes;
        if (bytes > capBytes && over === null) over = `new ${name}(${String(args[0]).slice(0, 40)}) = ${bytes} bytes\n${new Error().stack?.split("\n").slice(2, 7).join("\n")}`;
        return Reflect.construct(target, args, newTarget === proxy ? target : newTarget);
      },
      apply(target, self, args) {
        // Array(n) without `new`.
        const bytes = requested(name, args);
        if (bytes > largest) largest = bytes;
        if (bytes > capBytes && over === null) over = `${name}(${String(args[0]).slice(0, 40)}) = ${bytes} bytes`;
        return Reflect.apply(target as unknown as (...a: unknown[]) => unknown, self, args);
      },
    });
    g[name] = proxy;
  }
  try {
    const result = await fn();
    return { result, largest, over };
  } catch (error) {
    return { error, largest, over };
  } finally {
    for (const [name, v] of saved) g[name] = v;
  }
}

// ---- the runner ---------------------------------------------------------------------------------------------

/** Names, sizes and modification times of everything under `dir`: what a parser must leave as it was. */
export function snapshot(dir: string): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = statSync(p);
      out.push(`${p} ${st.isDirectory() ? "dir" : `${st.size} ${st.mtimeMs}`}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.join("\n");
}

export interface FuzzCase {
  what: string;
  /** Bytes of the input (the allocation cap is a multiple of this). */
  inputBytes: number;
  /** Parse (and use what was accepted); resolve to anything on acceptance. */
  run: () => Promise<unknown>;
}

export interface FuzzReport {
  cases: number;
  accepted: number;
  refused: number;
  /** Every case that ended otherwise, described (an empty list is the pass). */
  problems: string[];
  seconds: number;
  slowest: { what: string; ms: number };
  largestRatio: number;
}

/**
 * Run `n` cases from `make(k)`; each must resolve (accepted) or reject with an instance of `errorClass`
 * (refused), allocate no typed array / Array over `ratio` × its input + `slackBytes`, leave `dir` as it was
 * (no write), and finish within `caseMs`.
 */
export async function fuzz(
  n: number,
  make: (k: number) => FuzzCase | Promise<FuzzCase>,
  o: { errorClass: new (...a: never[]) => Error; dir: string; ratio?: number; slackBytes?: number; caseMs?: number },
): Promise<FuzzReport> {
  const ratio = o.ratio ?? 4;
  const slack = o.slackBytes ?? 1 << 16;
  const caseMs = o.caseMs ?? 2000;
  const r: FuzzReport = { cases: 0, accepted: 0, refused: 0, problems: [], seconds: 0, slowest: { what: "", ms: 0 }, largestRatio: 0 };
  const t0 = performance.now();
  for (let k = 0; k < n; k++) {
    const c = await make(k);
    const before = snapshot(o.dir);
    const cap = ratio * c.inputBytes + slack;
    const t = performance.now();
    const out = await withAllocationCap(cap, c.run);
    const ms = performance.now() - t;
    r.cases++;
    if (ms > r.slowest.ms) r.slowest = { what: c.what, ms };
    r.largestRatio = Math.max(r.largestRatio, out.largest / Math.max(1, c.inputBytes));
    const tag = `#${k} ${c.what}`;
    if ("error" in out && out.error !== undefined) {
      if (out.error instanceof o.errorClass) r.refused++;
      else r.problems.push(`${tag}: ${(out.error as Error)?.name ?? typeof out.error}: ${String((out.error as Error)?.message ?? out.error).slice(0, 300)}`);
    } else r.accepted++;
    if (out.over) r.problems.push(`${tag}: allocation over ${cap} bytes (input ${c.inputBytes}): ${out.over}`);
    if (ms > caseMs) r.problems.push(`${tag}: took ${ms.toFixed(0)} ms`);
    if (snapshot(o.dir) !== before) r.problems.push(`${tag}: the input directory changed (a write)`);
    if (r.problems.length > 20) break;
  }
  r.seconds = (performance.now() - t0) / 1000;
  return r;
}
