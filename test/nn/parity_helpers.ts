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

// The tests' own comparison, written apart from the parity command's (src/cli/parity.ts checks --expected with
// its own code and constants): a test must not pass because the code under test judged itself.

/** The tolerances the tests hold the model to (the header of parity.test.ts says what each means). */
export const TEST_TOL = { logits: 1e-4, loss: 1e-4, hidden: 1e-4, grad: 1e-3 } as const;

/**
 * Positions (b * T + t) that attend to at least one key: the first attended position of a row and everything
 * after it (causal masking), from a 0/1 attention mask (all positions when there is none).
 */
export function attendingPositions(mask: number[][] | undefined, B: number, T: number): boolean[] {
  return Array.from({ length: B * T }, (_, i) => {
    const row = mask?.[Math.floor(i / T)];
    return !row || row.slice(0, (i % T) + 1).includes(1);
  });
}

/**
 * The largest absolute error over the kept elements, relative to the largest |reference| among them; an element
 * belongs to position floor(i / rowLen). Any NaN in `got` (kept) is an infinite error.
 */
export function maxRelError(got: ArrayLike<number>, ref: ArrayLike<number>, rowLen = 1, keep?: readonly boolean[]): number {
  if (got.length !== ref.length) throw new Error(`compared arrays differ in length: ${got.length} vs ${ref.length}`);
  const idx = [...Array(ref.length).keys()].filter((i) => !keep || keep[Math.floor(i / rowLen)]);
  if (idx.some((i) => Number.isNaN(got[i]!))) return Infinity;
  const worst = idx.reduce((m, i) => Math.max(m, Math.abs(got[i]! - ref[i]!)), 0);
  const scale = idx.reduce((m, i) => Math.max(m, Math.abs(ref[i]!)), 0);
  return scale > 0 ? worst / scale : worst;
}
