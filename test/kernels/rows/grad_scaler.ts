// unscaleGrads (src/kernels/grad_scaler.ts) against test/reference/grad_scaler.ts, bit for bit: several gradients
// of odd sizes (one empty) multiplied by an f32 1/scale that rounds; an inf, -inf or NaN injected into one gradient
// of several (the flag raised, every element still unscaled); invScale 1 (left alone); a 2-D grid of workgroups
// (policy grid.maxX 2) with the non-finite value in the last workgroup. The flag's buffer starts NaN-poisoned.
import type { PartialPolicy } from "../../../src/gpu/policy.ts";
import { unscaleGrads } from "../../../src/kernels/grad_scaler.ts";
import * as R from "../../reference/grad_scaler.ts";
import { uniform } from "../../tensor/helpers.ts";
import type { Check, LauncherRow } from "../harness.ts";

const GRID: PartialPolicy = { grid: { maxX: 2 } };
const EXACT = { rtol: 0, atol: 0 };

/** Gradient j draws from ±0.01, ±10 or ±1e4 (by j % 3), so the products span many exponents. */
function row(what: string, sizes: number[], invScale: number, inject?: { grad: number; at: number; value: number }, variant?: PartialPolicy): LauncherRow {
  return {
    family: "grad_scaler",
    name: `grad_scaler unscaleGrads ${what} [${sizes}] invScale ${invScale}${variant ? " grid.maxX=2" : ""}`,
    variant,
    async run(gpu, io, r) {
      const G = sizes.map((n, j) => uniform(r, n, -(10 ** ((j % 3) * 3 - 3)) * 10, 10 ** ((j % 3) * 3 - 3) * 10));
      if (inject) G[inject.grad]![inject.at] = inject.value;
      const grads = G.map((g) => io.input(g));
      const foundInf = io.output(1);
      unscaleGrads(gpu, { grads, foundInf }, { sizes, invScale });
      const ref = R.unscaleGrads({ grads: G }, { sizes, invScale });
      const flag = await io.read(foundInf, 1);
      const checks: Check[] = [{ what: "foundInf", got: new Uint32Array(flag.buffer, flag.byteOffset, 1), ref: [ref.foundInf], opts: EXACT }];
      for (let j = 0; j < sizes.length; j++)
        checks.push({ what: `grad ${j}`, got: await io.read(grads[j]!, sizes[j]!), ref: Float32Array.from(ref.grads[j]!), opts: EXACT });
      return checks;
    },
  };
}

const THIRD = Math.fround(1 / 3); // torch's f32(1 / f64(scale)) for scale 3: it rounds

export const rows: LauncherRow[] = [
  row("clean", [5, 3, 300, 301], THIRD),
  row("clean, an empty gradient", [7, 0, 5], Math.fround(1 / 65536)),
  ...([Infinity, -Infinity, NaN] as const).map((value) => row(`${value} in one of three`, [5, 37, 7], THIRD, { grad: 1, at: 17, value })),
  row("invScale 1 with a NaN", [9, 300], 1, { grad: 0, at: 8, value: NaN }),
  row("inf in the last workgroup", [1101, 4100], THIRD, { grad: 1, at: 4099, value: Infinity }, GRID), // 5 and 17 workgroups
];
