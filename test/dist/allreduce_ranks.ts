// Run by test/dist/mpi.test.ts as `mpirun -np N bun test/dist/allreduce_ranks.ts`: every collective of the binding
// on known arrays; each rank prints one JSON line of what it got (the test checks exact values).
import { firstFailure, world } from "../../src/dist/index.ts";

const { size, rank, localRank } = world;
const out: Record<string, unknown> = { rank, size, localRank, library: world.library };

// f32 sum: rank r contributes r + 1 + i/4 (exact in f32), so the sum is N(N+1)/2 + N·i/4.
const f32 = Float32Array.from({ length: 1000 }, (_, i) => rank + 1 + i / 4);
world.allReduce(f32, "sum");
out.f32 = [f32[0], f32[1], f32[999]];
out.f32Exact = f32.every((x, i) => x === (size * (size + 1)) / 2 + (size * i) / 4);

// mean (f32), and a 12 MB f32 all-reduce (timed).
const mean = Float32Array.of(rank, 2 * rank, 1);
world.allReduce(mean, "mean");
out.mean = Array.from(mean);
const big = new Float32Array(3 << 20).fill(rank + 1);
const t0 = performance.now();
world.allReduce(big, "sum");
out.bigMs = performance.now() - t0;
out.bigExact = big.every((x) => x === (size * (size + 1)) / 2);

const f64 = Float64Array.of(0.1 * (rank + 1), 1e300);
world.allReduce(f64, "sum");
out.f64 = Array.from(f64);
const i32 = Int32Array.of(rank, -rank, 7);
world.allReduce(i32, "max");
out.max = Array.from(i32);
const mn = Int32Array.of(rank, -rank);
world.allReduce(mn, "min");
out.min = Array.from(mn);
const h = Float16Array.of(rank + 0.5, 1024);
world.allReduceF16(h, "sum");
out.f16 = Array.from(h);

// broadcast from the last rank, of bytes and of an f32 view with an offset
const bytes = new Uint8Array(5).fill(rank === size - 1 ? 42 : 0);
world.broadcast(bytes, size - 1);
out.bcast = Array.from(bytes);
const backing = new Float32Array(4).fill(rank);
world.broadcast(backing.subarray(1, 3), size - 1);
out.bcastView = Array.from(backing);
world.barrier();

// barrierAsync: rank 0 arrives 300 ms late; the others wait for it without spinning a core.
if (rank === 0) await Bun.sleep(300);
const w0 = performance.now(), cpu0 = process.cpuUsage();
await world.barrierAsync();
const cpu = process.cpuUsage(cpu0);
out.barrierWaitMs = performance.now() - w0;
out.barrierCpuMs = (cpu.user + cpu.system) / 1e3;

// every rank learns the failure of the lowest failing rank (ranks >= 1 fail here)
const f = firstFailure(world, rank >= 1 ? { message: `rank ${rank} says no ✗`, exitCode: 2 + rank } : null);
out.failure = f;
out.none = firstFailure(world, null);
console.log(JSON.stringify(out));
world.finalize();
