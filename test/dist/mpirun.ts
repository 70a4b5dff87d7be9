// Launching test ranks: `mpirun -np N CMD...` of the MPI installed here (Open MPI: --allow-run-as-root
// --oversubscribe; MPICH's hydra takes neither), or the reason the MPI tests are skipped.
import { spawnSync } from "node:child_process";

export interface Mpirun {
  path: string;
  flavor: "Open MPI" | "MPICH";
}

function find(): Mpirun | string {
  const which = spawnSync("sh", ["-c", "command -v mpirun"], { encoding: "utf8" });
  const path = which.stdout.trim();
  if (which.status !== 0 || !path) return "mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev, or tools/setup.sh)";
  const v = spawnSync(path, ["--version"], { encoding: "utf8" });
  const text = `${v.stdout}${v.stderr}`;
  if (/Open MPI/i.test(text)) return { path, flavor: "Open MPI" };
  if (/HYDRA|MPICH/i.test(text)) return { path, flavor: "MPICH" };
  return `mpirun at ${path} is neither Open MPI's nor MPICH's (--version: ${text.trim().split("\n")[0]})`;
}

const found = find();
export const MPIRUN: Mpirun | null = typeof found === "string" ? null : found;
/** Why the MPI tests are skipped ("" when they run). */
export const NO_MPIRUN: string = typeof found === "string" ? found : "";
if (NO_MPIRUN) console.log(`skipping the mpirun tests: ${NO_MPIRUN}`);

/** The command line of `np` ranks of `cmd`. */
export function mpirunCmd(np: number, cmd: readonly string[]): string[] {
  if (!MPIRUN) throw new Error(NO_MPIRUN);
  const extra = MPIRUN.flavor === "Open MPI" ? ["--allow-run-as-root", "--oversubscribe"] : [];
  return [MPIRUN.path, ...extra, "-np", String(np), ...cmd];
}

/** One launch of several programs (MPMD, `mpirun -np 1 A : -np 1 B`): rank i runs `cmds[i]`. */
export function mpirunMpmd(cmds: readonly (readonly string[])[]): string[] {
  if (!MPIRUN) throw new Error(NO_MPIRUN);
  const extra = MPIRUN.flavor === "Open MPI" ? ["--allow-run-as-root", "--oversubscribe"] : [];
  return [MPIRUN.path, ...extra, ...cmds.flatMap((c, i) => [...(i ? [":"] : []), "-np", "1", ...c])];
}

/** The environment of launched ranks: the test run's, without a launcher's variables of its own. */
export function rankEnv(extra: Record<string, string> = {}): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const k of Object.keys(env)) if (/^(OMPI_|PMIX_|PMI_)/.test(k) || k === "MPI_LOCALRANKID") delete env[k];
  return { ...env, ...extra };
}
