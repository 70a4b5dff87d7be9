// The import graph of src/: layers import only downward, and no module imports itself through others.
// Layers, lowest first (README "Layout"): gpu (and dist) → kernels → tensor → io, optim, data → nn → eval → align
// → cli, with src/index.ts and src/globals.ts (the package's entry points) on top. A module may import its own
// layer or lower ones. Type-only imports (`import type`, `export type`) are erased at run time and do not
// count; every other static import and re-export does.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = resolve(import.meta.dir, "..", "src");
const RANK: Record<string, number> = { gpu: 0, dist: 0, kernels: 1, tensor: 2, io: 3, optim: 3, data: 3, nn: 4, eval: 5, align: 6, cli: 7, "(entry)": 8 };

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
}

/** The layer of a file under src/: its first folder, or "(entry)" for src/*.ts. */
const layerOf = (file: string): string => {
  const parts = relative(SRC, file).split("/");
  return parts.length === 1 ? "(entry)" : parts[0]!;
};

/** Value imports of a module: relative specifiers of `import ... from`, `export ... from` and `import "..."`. */
export function valueImports(file: string, text: string): string[] {
  const out: string[] = [];
  const re = /^\s*(import|export)\s+(type\s+)?([^;]*?\sfrom\s+)?["']([^"']+)["']/gm;
  for (const m of text.matchAll(re)) {
    if (m[2]) continue; // import type / export type
    const spec = m[4]!;
    if (!spec.startsWith(".")) continue; // a package
    if (/\.(wgsl|json)$/.test(spec)) continue; // text and JSON assets
    // `import { type A, type B } from` is type-only too.
    const names = m[3] ? /\{([^}]*)\}/.exec(m[3])?.[1] : undefined;
    if (names !== undefined && m[3]!.trim().startsWith("{") && names.split(",").every((n) => n.trim() === "" || n.trim().startsWith("type "))) continue;
    out.push(resolve(dirname(file), spec));
  }
  return out;
}

const all = files(SRC);
const graph = new Map(all.map((f) => [f, valueImports(f, readFileSync(f, "utf8")).filter((t) => t.startsWith(SRC))]));

describe("src/ import graph", () => {
  test("every layer is named in the layer list", () => {
    const unknown = [...new Set(all.map(layerOf))].filter((l) => RANK[l] === undefined);
    expect(unknown).toEqual([]);
  });

  test("no module imports a higher layer", () => {
    const upward: string[] = [];
    for (const [f, deps] of graph)
      for (const d of deps)
        if (RANK[layerOf(d)]! > RANK[layerOf(f)]!) upward.push(`${relative(SRC, f)} (${layerOf(f)}) imports ${relative(SRC, d)} (${layerOf(d)})`);
    expect(upward).toEqual([]);
  });

  test("no import cycle", () => {
    // Tarjan's strongly connected components: any component of more than one module is a cycle.
    let index = 0;
    const idx = new Map<string, number>(), low = new Map<string, number>(), on = new Set<string>(), stack: string[] = [];
    const cycles: string[][] = [];
    const visit = (v: string): void => {
      idx.set(v, index);
      low.set(v, index++);
      stack.push(v);
      on.add(v);
      for (const w of graph.get(v) ?? []) {
        if (!graph.has(w)) continue;
        if (!idx.has(w)) {
          visit(w);
          low.set(v, Math.min(low.get(v)!, low.get(w)!));
        } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
      }
      if (low.get(v) === idx.get(v)) {
        const comp: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          on.delete(w);
          comp.push(relative(SRC, w));
        } while (w !== v);
        if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) cycles.push(comp.sort());
      }
    };
    for (const f of all) if (!idx.has(f)) visit(f);
    expect(cycles).toEqual([]);
  });

  test("the walker sees what it must: a value import, a re-export; not a type-only import", () => {
    const f = join(SRC, "tensor", "x.ts");
    const imports = valueImports(
      f,
      `import { a } from "./a.ts";\nimport type { B } from "./b.ts";\nimport { type C } from "./c.ts";\nexport * from "./d.ts";\nexport type { E } from "./e.ts";\nimport src from "../../kernels/x.wgsl" with { type: "text" };\nimport { cac } from "cac";`,
    );
    expect(imports.map((p) => relative(SRC, p))).toEqual(["tensor/a.ts", "tensor/d.ts"]);
  });
});
