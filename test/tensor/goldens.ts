// Load a PyTorch golden fixture written by tools/goldens/<family>.py (see tools/goldens/common.py).
import { readFileSync } from "node:fs";
import { join } from "node:path";

export interface GoldenTensor {
  shape: number[];
  dtype: "f32" | "i32";
  data: number[];
}

export interface GoldenCase {
  name: string;
  params: Record<string, unknown>;
  inputs: Record<string, GoldenTensor>;
  outputs: Record<string, GoldenTensor>;
  /** Upstream gradient per output: grads are d(sum(out * upstream))/d(input). */
  upstream: Record<string, GoldenTensor>;
  grads: Record<string, GoldenTensor>;
}

export function loadGoldens(family: string): GoldenCase[] {
  const path = join(import.meta.dir, "..", "fixtures", "goldens", `${family}.json`);
  const doc = JSON.parse(readFileSync(path, "utf8")) as { family: string; cases: GoldenCase[] };
  if (doc.family !== family || !Array.isArray(doc.cases) || doc.cases.length === 0)
    throw new Error(`${path}: not a golden fixture for '${family}' (regenerate with /usr/bin/python3 tools/goldens/${family}.py)`);
  return doc.cases;
}
