// bench/suites/dist_step.ts without launching it: the rows from a rank report (exposed = the median of the per-round
// differences to the no-exchange step, not the difference of the medians), and the skip, with the reason, where
// there is no mpirun. The launch itself runs in `bun run bench` (bench/NOTES.md has its figures).
import { describe, expect, test } from "bun:test";
import { distStepRows, distStepSuite, type RankReport } from "../../bench/suites/dist_step.ts";

const mode = (ms: number[], extra: Partial<RankReport["modes"]["serial"]> = {}) => ({ ms, host_ms: [], mpi_ms: [], wait_ms: [], early: [], buckets: [], ...extra });

describe("dist_step suite", () => {
  test("rows: the step's median, the exchange's exposed time paired by round, its share", () => {
    // Round 2 was slow for every mode (the machine's load): paired differences ignore it, medians would not.
    const report: RankReport = {
      config: "tiny-64",
      ranks: 2,
      params: 220480,
      grad_bytes: 881920,
      modes: {
        alone: mode([100, 300, 110]),
        serial: mode([120, 330, 125], { host_ms: [9, 10, 11], mpi_ms: [5, 6, 7], wait_ms: [80, 90, 100], early: [0, 0, 0], buckets: [4, 4, 4] }),
        overlap: mode([105, 310, 150], { host_ms: [12, 14, 13], mpi_ms: [10, 12, 11], wait_ms: [70, 75, 80], early: [4, 4, 3], buckets: [4, 4, 4] }),
      },
    };
    const rows = distStepRows(report);
    expect(rows.map((r) => r.name)).toEqual(["dist-step-alone-tiny-64", "dist-step-serial-tiny-64", "dist-step-overlap-tiny-64"]);
    const [alone, serial, overlap] = rows;
    expect([alone!.step_ms, alone!.exposed_ms, alone!.share, alone!.host_ms]).toEqual([110, 0, 0, undefined]);
    expect([serial!.step_ms, serial!.exposed_ms]).toEqual([125, 20]); // differences 20, 30, 15 → 20 (medians: 125 − 110 = 15)
    expect(serial!.share).toBeCloseTo(20 / 125, 12);
    expect([serial!.host_ms, serial!.mpi_ms, serial!.wait_ms, serial!.early, serial!.buckets]).toEqual([10, 6, 90, 0, 4]);
    expect([overlap!.step_ms, overlap!.exposed_ms, overlap!.early]).toEqual([150, 10, 4]); // differences 5, 10, 40
    expect(overlap!.runs).toEqual([105, 310, 150]);
  });

  test("no mpirun: skipped, saying why", () => {
    const r = distStepSuite({ quick: true, env: { PATH: "/nonexistent" } });
    expect(r.result).toBeUndefined();
    expect(r.skipped).toEqual([{ what: "dist-step-{alone,serial,overlap}-tiny-64", why: expect.stringContaining("mpirun is not on PATH") }]);
  });
});
