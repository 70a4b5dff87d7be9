// Shared by the test/nn files: the parity fixtures (test/fixtures/parity/<family>: a tiny HF checkpoint, a
// batch, and the PyTorch reference's outputs from tools/parity_reference.py) and error measures.
import { join } from "node:path";
import { readSafetensors } from "../../src/io/index.ts";

export const FIXTURES = join(import.meta.dir, "..", "fixtures", "parity");
export const FAMILIES = ["llama", "llama3", "mistral", "gemma"] as const;

/** name → float32 values and shape, from a .safetensors file. */
export async function readExpected(path: string): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  const { tensors } = await readSafetensors(path);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const t of tensors) {
    if (t.dtype !== "F32") throw new Error(`${path}: ${t.name} is ${t.dtype}, expected F32`);
    out.set(t.name, { shape: t.shape, data: t.data as Float32Array });
  }
  return out;
}

/** Which (b, t) positions see at least one key under causal + key-padding masking (row-major B × T). */
export function seesAKey(mask: number[][] | undefined, B: number, T: number): boolean[] {
  const ok: boolean[] = [];
  for (let b = 0; b < B; b++) {
    let seen = false;
    for (let t = 0; t < T; t++) {
      if (!mask || mask[b]![t] === 1) seen = true;
      ok.push(seen);
    }
  }
  return ok;
}

/**
 * max |got - ref| / max |ref| over the elements `keep` selects (per row of `rowLen` elements; all when
 * undefined). NaN anywhere in got → Infinity.
 */
export function relMaxError(got: ArrayLike<number>, ref: ArrayLike<number>, rowLen = 1, keep?: boolean[]): number {
  if (got.length !== ref.length) throw new Error(`length ${got.length} vs ${ref.length}`);
  let err = 0;
  let mag = 0;
  for (let i = 0; i < ref.length; i++) {
    if (keep && !keep[Math.floor(i / rowLen)]) continue;
    const g = got[i]!;
    if (Number.isNaN(g)) return Infinity;
    err = Math.max(err, Math.abs(g - ref[i]!));
    mag = Math.max(mag, Math.abs(ref[i]!));
  }
  return mag === 0 ? err : err / mag;
}
