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

// The comparison itself lives with the parity command (it checks --expected the same way).
export { relMaxError, seesAKey } from "../../src/cli/parity.ts";
