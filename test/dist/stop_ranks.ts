// Run by test/dist/mpi.test.ts as `mpirun -np 2 bun src/cli/main.ts run test/dist/stop_ranks.ts`: rank 1 fails, both
// agree to stop (firstFailure), and rank 0 is slow to get to its message (2 s of clean-up, say). The launcher ends
// the job at rank 1's exit; the CLI must keep rank 1 until rank 0 has said why too.
import { firstFailure, world } from "../../src/dist/index.ts";

const f = firstFailure(world, world.rank === 1 ? { message: "rank 1 cannot go on", exitCode: 2 } : null);
if (!f) throw new Error("no failure agreed");
if (world.rank === 0) await Bun.sleep(2000);
throw Object.assign(new Error(`${f.message} (seen by rank ${world.rank})`), { exitCode: f.exitCode });
