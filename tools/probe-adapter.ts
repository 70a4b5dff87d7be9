// Used by tools/setup.sh: prints one word, `gpu` (Dawn sees a non-CPU adapter), `cpu` (only a CPU adapter,
// e.g. lavapipe) or `none`, and exits 0 in all three cases.
import { listAdapters } from "../src/gpu/device.ts";

let verdict = "none";
try {
  const all = await listAdapters();
  if (all.some((a) => a.kind !== "cpu")) verdict = "gpu";
  else if (all.length) verdict = "cpu";
} catch {
  verdict = "none";
}
console.log(verdict);
process.exit(0);
