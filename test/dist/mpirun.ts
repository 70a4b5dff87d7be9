// Launching test ranks: `mpirun -np N CMD...` of the MPI installed here (Open MPI: --allow-run-as-root
// --oversubscribe; MPICH's hydra takes neither), or the reason the MPI tests are skipped.
import { expect } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { cliEnv, ROOT, type CliResult } from "../align/train_fixture.ts";

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

/** The environment of an mpirun launched by a test: the CLI tests' environment, without a launcher's variables. */
export const launchEnv = () => ({ ...rankEnv(), ...Object.fromEntries(Object.entries(cliEnv()).filter(([k]) => !/^(OMPI_|PMIX_|PMI_)/.test(k))) });

/**
 * Run `cmd` (an mpirun line) from the repo root; SIGKILL after `timeoutMs`. A launch in which Bun itself panicked
 * ("Bun has crashed": a segfault inside the runtime, seen once in ~10 CI-like runs, in a rank's start-up before
 * any training) is run once more, saying so (`what` names the test file's subject); any other failure is the
 * test's to judge.
 */
export async function launch(what: string, cmd: string[], timeoutMs: number): Promise<CliResult & { seconds: number }> {
  const r = await launchOnce(cmd, timeoutMs);
  if (r.code === 0 || !r.stderr.includes("Bun has crashed")) return r;
  console.warn(`${what}: Bun crashed in a rank (exit ${r.code}); running the launch once more:\n${r.stderr.slice(0, 2000)}`);
  return launchOnce(cmd, timeoutMs);
}

async function launchOnce(cmd: string[], timeoutMs: number): Promise<CliResult & { seconds: number }> {
  const t0 = performance.now();
  const proc = Bun.spawn({ cmd, cwd: ROOT, env: launchEnv(), stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: timeoutMs, killSignal: "SIGKILL" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (proc.signalCode) throw new Error(`${cmd.join(" ")}: killed by ${proc.signalCode} (timeout ${timeoutMs} ms?)\n${stdout}\n${stderr}`);
  return { code, signal: null, stdout, stderr, seconds: (performance.now() - t0) / 1e3 };
}

/** Two ranks refused `cmd` before any work: exit 2, the same `alignx: ` message from both, matching `message`; `out` not created. */
export async function expectRefusedByBoth(what: string, cmd: string[], out: string, message: RegExp, timeoutMs: number): Promise<void> {
  const r = await launch(what, cmd, timeoutMs);
  expect(r.code, r.stderr).toBe(2);
  const said = r.stderr.split("\n").filter((l) => l.startsWith("alignx: "));
  expect(said.length, r.stderr).toBe(2);
  expect(said[0]).toBe(said[1]!);
  expect(said[0]).toMatch(message);
  expect(existsSync(out)).toBe(false);
}
