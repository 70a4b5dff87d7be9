// The table-driven launcher test's vocabulary (test/kernels/launchers.test.ts): a row is one launcher call under one
// kernel policy (a variant) on one shape and dtype, checked against the float64 reference of test/reference/.
// Rows live per family in test/kernels/rows/<family>.ts (each exports `rows: LauncherRow[]`); a new kernel variant
// is tested by adding a row.
import type { Gpu, PooledBuffer } from "../../src/gpu/index.ts";
import type { PartialPolicy } from "../../src/gpu/policy.ts";
import { poison } from "../helpers.ts";
import type { CloseOpts } from "../tensor/helpers.ts";

/** One comparison of a row: an output read back from the device against its float64 reference. */
export interface Check {
  what: string;
  got: ArrayLike<number>;
  ref: ArrayLike<number>;
  opts?: CloseOpts;
}

export interface LauncherRow {
  /** The op family (test/reference/<family>.ts, src/kernels/<family>.ts). */
  family: string;
  /** Unique within the table: launcher, variant, shape, dtype. */
  name: string;
  /** The kernel policy the launcher runs under (gpu.withPolicy); none = the device's default choice. */
  variant?: PartialPolicy;
  /** Why this row cannot run on this device (e.g. no 8-lane subgroups), or null. */
  skip?: (gpu: Gpu) => string | null;
  /**
   * Build seeded inputs with `io`, run the launcher (outputs come from io.output: NaN-poisoned), read back, and
   * return the comparisons with the reference. Buffers made through `io` are released by the runner.
   */
  run(gpu: Gpu, io: RowIo, r: () => number): Promise<Check[]>;
}

/**
 * What a row builder may vary besides the shape: the policy variant, a label for the row's name, a skip rule, and
 * whether the inputs carry NaN (each family's rows say where they put it).
 */
export interface RowExtra {
  variant?: PartialPolicy;
  label?: string;
  skip?: LauncherRow["skip"];
  nan?: boolean;
}

/** ` (label)` for a row's name, or nothing. */
export const labelSuffix = (e: RowExtra): string => (e.label ? ` (${e.label})` : "");

/** float64 values rounded to f32, as the device receives them (references read the same inputs). */
export const f32 = (x: Float64Array): Float64Array => Float64Array.from(new Float32Array(x));

/** Buffers for one row: inputs uploaded, outputs poisoned with NaN, all released after the row. */
export class RowIo {
  private readonly made: PooledBuffer[] = [];
  constructor(private readonly gpu: Gpu) {}

  /** An input: f32 values (rounded from float64), or the raw words of an Int32Array / Uint32Array. */
  input(data: Float64Array | Float32Array | Int32Array | Uint32Array): PooledBuffer {
    const bytes = data instanceof Float64Array ? new Float32Array(data) : data;
    const b = this.gpu.upload(bytes.length ? bytes : new Float32Array(1));
    this.made.push(b);
    return b;
  }

  /** An output of `n` 32-bit elements, poisoned with NaN so an element the kernel skips cannot pass. */
  output(n: number): PooledBuffer {
    const b = this.gpu.alloc(Math.max(4, 4 * n));
    poison(this.gpu, b);
    this.made.push(b);
    return b;
  }

  /** The first `n` f32 values of a buffer. */
  async read(b: PooledBuffer, n: number): Promise<Float32Array> {
    return new Float32Array(await this.gpu.read(b, 4 * n));
  }

  release(): void {
    for (const b of this.made.splice(0)) this.gpu.release(b);
  }
}
