/**
 * The device of the project's own commands (train, align, eval, generate, parity): tuned kernel variants (timed on
 * the first run, cached on disk after) and Dawn's robustness off, since only the runtime's own kernels run there,
 * which the tests check element by element with NaN-poisoned outputs (src/gpu/device.ts; `ALIGNX_ROBUSTNESS=1`
 * keeps it on). `alignx run` user scripts never get this device. Under mpirun (`alignx train`, `alignx align`),
 * `openRankGpu` opens each rank's.
 */
import "../tensor/index.ts"; // registers the ops' tuners, which Gpu.open({ tune: true }) runs
import { TrainError } from "../align/index.ts";
import { firstFailure, type Comm } from "../dist/index.ts";
import { Gpu, listAdapters } from "../gpu/index.ts";

export function openCommandGpu(o: { adapter?: string; cpu?: boolean }): Promise<Gpu> {
  return Gpu.open({ adapter: o.adapter, cpu: o.cpu, tune: true, robustness: false });
}

/**
 * The adapter of a data-parallel rank: `localRank % count` over the GPU adapters Dawn lists (over every adapter
 * when none is a GPU), as an index for `--adapter`; undefined when there is none (opening then says so).
 */
export async function rankAdapter(localRank: number): Promise<string | undefined> {
  const all = (await listAdapters()).map((e, i) => ({ e, i }));
  const gpus = all.filter((x) => x.e.kind !== "cpu");
  const pool = gpus.length ? gpus : all;
  return pool.length ? String(pool[localRank % pool.length]!.i) : undefined;
}

/**
 * This rank's device (`cmd`: the command, for messages): its local rank's adapter unless one is chosen for every
 * rank (--adapter, --cpu, ALIGNX_ADAPTER, ALIGNX_CPU); a rank that cannot open one stops every rank with its
 * message (exit 2). Local rank 0 opens first: the kernel autotuning (timed on a machine's first run) is then done
 * once per machine and read from its cache by the other ranks, so ranks on alike adapters run the same kernel
 * variants and round alike (the weights of every rank stay identical).
 */
export async function openRankGpu(cmd: string, comm: Comm, o: { adapter?: string; cpu?: boolean }): Promise<Gpu> {
  if (comm.size === 1) return openCommandGpu(o);
  const env = process.env;
  const chosen = o.adapter !== undefined || !!env.ALIGNX_ADAPTER || o.cpu === true || env.ALIGNX_CPU === "1" || env.ALIGNX_CPU === "true";
  let gpu: Gpu | undefined;
  let err: unknown;
  const open = async () => {
    try {
      gpu = await openCommandGpu({ adapter: chosen ? o.adapter : await rankAdapter(comm.localRank), cpu: o.cpu });
    } catch (e) {
      err = e;
    }
  };
  if (comm.localRank === 0) await open();
  await comm.barrierAsync();
  if (comm.localRank !== 0) await open();
  const code = typeof (err as { exitCode?: unknown })?.exitCode === "number" ? (err as { exitCode: number }).exitCode : 2;
  const f = firstFailure(comm, err === undefined ? null : { message: `${cmd}: rank ${comm.rank} of ${comm.size} cannot open its adapter: ${(err as Error)?.message ?? String(err)}`, exitCode: code });
  if (f) {
    gpu?.destroy();
    throw new TrainError(f.message, f.exitCode);
  }
  return gpu!;
}

/** The line each rank prints once its device is open (data parallel only). */
export function rankLine(cmd: string, comm: Comm, gpu: Gpu): string {
  return `${cmd}: rank ${comm.rank} of ${comm.size} (local rank ${comm.localRank}, ${comm.library?.flavor ?? "no MPI"}): ${gpu.adapter.description}`;
}
