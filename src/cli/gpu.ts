/**
 * The device of the project's own commands (train, align, eval, generate, parity): tuned kernel variants (timed on
 * the first run, cached on disk after) and Dawn's robustness off, since only the runtime's own kernels run there,
 * which the tests check element by element with NaN-poisoned outputs (src/gpu/device.ts; `ALIGNX_ROBUSTNESS=1`
 * keeps it on). `alignx run` user scripts never get this device.
 */
import "../tensor/index.ts"; // registers the ops' tuners, which Gpu.open({ tune: true }) runs
import { Gpu } from "../gpu/index.ts";

export function openCommandGpu(o: { adapter?: string; cpu?: boolean }): Promise<Gpu> {
  return Gpu.open({ adapter: o.adapter, cpu: o.cpu, tune: true, robustness: false });
}
