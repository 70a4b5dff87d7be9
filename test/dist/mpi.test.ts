// The MPI binding (src/dist/mpi.ts): a plain process is a world of one with no library (every collective a no-op);
// the launcher is recognised by its environment; a launch without a loadable library names the package to
// install; and, where mpirun is installed, 2 and 3 ranks of test/dist/allreduce_ranks.ts get exact sums, means,
// max/min, f16 sums, broadcasts, a barrier that waits without spinning, and the lowest failing rank's message (skipped, saying why, without mpirun).
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { detectLaunch, firstFailure, FLAVORS, loadMpi, LocalComm, MpiError, world, worldComm } from "../../src/dist/index.ts";
import { MPIRUN, mpirunCmd, NO_MPIRUN, rankEnv } from "./mpirun.ts";

const ROOT = join(import.meta.dir, "..", "..");

describe("a plain process: the world of one", () => {
  test("size 1, rank 0, no library; collectives leave the data as it is", async () => {
    expect(detectLaunch()).toBeNull();
    expect([world.size, world.rank, world.localRank]).toEqual([1, 0, 0]);
    expect(world.library).toBeNull();
    expect(worldComm()).toBeInstanceOf(LocalComm);
    const a = Float32Array.of(1.5, -2, 3);
    world.allReduce(a, "sum");
    world.allReduce(a, "mean");
    expect(Array.from(a)).toEqual([1.5, -2, 3]);
    const h = Float16Array.of(0.5, 7);
    world.allReduceF16(h, "mean");
    expect(Array.from(h)).toEqual([0.5, 7]);
    const b = Uint8Array.of(9, 8);
    world.broadcast(b, 0);
    expect(Array.from(b)).toEqual([9, 8]);
    world.barrier();
    await world.barrierAsync();
    expect(() => world.broadcast(b, 1)).toThrow(/root 1 is not a rank of a world of 1/);
    expect(() => world.allReduce(Int32Array.of(1), "mean")).toThrow(/mean of integers/);
    expect(firstFailure(world, null)).toBeNull();
    expect(firstFailure(world, { message: "no", exitCode: 2 })).toEqual({ rank: 0, message: "no", exitCode: 2 });
    world.finalize();
  });

  test("the launcher's environment: Open MPI, MPICH (hydra), PMIx", () => {
    expect(detectLaunch({ OMPI_COMM_WORLD_SIZE: "4", OMPI_COMM_WORLD_RANK: "3", OMPI_COMM_WORLD_LOCAL_RANK: "1" })).toEqual({
      via: "OMPI_COMM_WORLD_SIZE=4",
      flavor: "Open MPI",
      size: 4,
      rank: 3,
      localRank: 1,
    });
    expect(detectLaunch({ PMI_SIZE: "2", PMI_RANK: "1", MPI_LOCALRANKID: "0" })).toMatchObject({ flavor: "MPICH", size: 2, rank: 1, localRank: 0 });
    expect(detectLaunch({ PMIX_RANK: "5", SLURM_LOCALID: "1" })).toMatchObject({ flavor: "Open MPI", rank: 5, localRank: 1 });
    expect(detectLaunch({ HOME: "/root" })).toBeNull();
  });

  test("launched, but no library loads: the error names the launcher's package (exit 2)", () => {
    const missing = (name: "Open MPI" | "MPICH") => ({ ...FLAVORS[name], libraries: [`libno-such-${name.replace(" ", "")}.so.99`] });
    const flavors = { "Open MPI": missing("Open MPI"), MPICH: missing("MPICH") };
    let err: unknown;
    try {
      loadMpi({ flavor: "Open MPI", via: "OMPI_COMM_WORLD_SIZE=2" }, {}, flavors);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MpiError);
    expect((err as MpiError).exitCode).toBe(2);
    expect((err as Error).message).toMatch(/launched by an MPI launcher \(OMPI_COMM_WORLD_SIZE=2\) but no MPI library loads \(tried libno-such-OpenMPI\.so\.99 .*\); install Open MPI's: apt-get install openmpi-bin libopenmpi-dev/);
    expect(() => loadMpi({ flavor: "MPICH", via: "PMI_SIZE=2" }, {}, flavors)).toThrow(/install MPICH's: apt-get install mpich/);
    expect(() => loadMpi(null, { ALIGNX_MPI_LIB: "/no/such/libmpi.so" })).toThrow(/ALIGNX_MPI_LIB=\/no\/such\/libmpi\.so: not an Open MPI or MPICH library/);
  });

  test("a process that looks launched but has no library: exit 2 with the message, from a subprocess", () => {
    const code = `import { worldComm } from "./src/dist/index.ts"; try { worldComm(); } catch (e) { console.error(e.message); process.exit(e.exitCode); }`;
    const r = Bun.spawnSync({ cmd: [process.execPath, "-e", code], cwd: ROOT, env: rankEnv({ OMPI_COMM_WORLD_SIZE: "2", ALIGNX_MPI_LIB: "/no/such/libmpi.so" }) });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.toString()).toContain("ALIGNX_MPI_LIB=/no/such/libmpi.so: not an Open MPI or MPICH library");
  });
});

interface RankReport {
  rank: number;
  size: number;
  localRank: number;
  library: { flavor: string; path: string };
  f32: number[];
  f32Exact: boolean;
  mean: number[];
  bigMs: number;
  bigExact: boolean;
  f64: number[];
  max: number[];
  min: number[];
  f16: number[];
  bcast: number[];
  bcastView: number[];
  barrierWaitMs: number;
  barrierCpuMs: number;
  failure: { rank: number; message: string; exitCode: number };
  none: null;
}

describe("mpirun", () => {
  for (const np of [2, 3])
    test.skipIf(!MPIRUN)(`${np} ranks: exact sums, mean, max/min, f64, f16, broadcast, the first failure${NO_MPIRUN ? ` (skipped: ${NO_MPIRUN})` : ""}`, async () => {
      const t0 = performance.now();
      const proc = Bun.spawn({ cmd: mpirunCmd(np, [process.execPath, "test/dist/allreduce_ranks.ts"]), cwd: ROOT, env: rankEnv(), stdout: "pipe", stderr: "pipe", timeout: 60_000, killSignal: "SIGKILL" });
      const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      expect(code, stderr).toBe(0);
      const reports = stdout.trim().split("\n").map((l) => JSON.parse(l) as RankReport).sort((a, b) => a.rank - b.rank);
      console.log(`mpirun -np ${np}: ${((performance.now() - t0) / 1e3).toFixed(2)} s wall; 12 MB f32 all-reduce ${reports.map((r) => r.bigMs.toFixed(1)).join("/")} ms; ${reports[0]!.library.flavor} ${reports[0]!.library.path}`);
      expect(reports.map((r) => r.rank)).toEqual([...Array(np).keys()]);
      const tri = (np * (np + 1)) / 2;
      const last = np - 1;
      for (const r of reports) {
        expect(r.size).toBe(np);
        expect(r.localRank).toBe(r.rank); // one machine
        expect(r.f32Exact).toBe(true);
        expect(r.f32).toEqual([tri, tri + np / 4, tri + (np * 999) / 4]);
        expect(r.mean).toEqual([last / 2, last, 1]);
        expect(r.bigExact).toBe(true);
        expect(r.f64[1]).toBe(np * 1e300);
        expect(Math.abs(r.f64[0]! - 0.1 * tri)).toBeLessThan(1e-15);
        expect(r.max).toEqual([last, 0, 7]);
        expect(r.min).toEqual([0, -last]);
        expect(r.f16).toEqual([tri - np / 2, 1024 * np]);
        expect(r.bcast).toEqual([42, 42, 42, 42, 42]);
        expect(r.bcastView).toEqual([r.rank, last, last, r.rank]);
        if (r.rank > 0) {
          expect(r.barrierWaitMs).toBeGreaterThan(200); // it did wait for rank 0
          expect(r.barrierCpuMs).toBeLessThan(0.5 * r.barrierWaitMs); // without spinning
        }
        expect(r.failure).toEqual({ rank: 1, message: "rank 1 says no ✗", exitCode: 3 });
        expect(r.none).toBeNull();
      }
    }, 90_000);

  test.skipIf(!MPIRUN)(`ranks that agreed to stop all say why before the launcher ends the job, however slow one is${NO_MPIRUN ? ` (skipped: ${NO_MPIRUN})` : ""}`, async () => {
    const cmd = mpirunCmd(2, [process.execPath, "src/cli/main.ts", "run", "--cpu", "test/dist/stop_ranks.ts"]);
    const proc = Bun.spawn({ cmd, cwd: ROOT, env: rankEnv(), stdout: "pipe", stderr: "pipe", timeout: 60_000, killSignal: "SIGKILL" });
    const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    expect(code, stderr).toBe(2);
    const said = stderr.split("\n").filter((l) => l.startsWith("alignx: ")).sort();
    expect(said, stderr).toEqual(["alignx: rank 1 cannot go on (seen by rank 0)", "alignx: rank 1 cannot go on (seen by rank 1)"]);
  }, 90_000);
});
