// The bench's generation, evaluation and all-reduce rows (bench/suites/generate.ts, bench/suites/dist.ts; issue 12
// item 5, issue 15 item 6) work and report what they say: on a micro config (tiny-64, 8-token prompts, 4 new
// tokens) the generation rows give finite positive prefill and decode rates with every row run to its length and
// a floor once a ceiling is known; the eval row runs `alignx eval`'s function on 2 UDHR rows both ways; the rank
// programs' output (the C peer's format, MPI's chatter around it) is parsed, and a wrong sum, a missing size or a
// malformed line is refused naming the program; GB/s is bytes / time; the rank program refuses bad arguments; and where mpirun is installed, a PATH
// without mpicc skips the C rows saying so while our binding's rows still run (a PATH without mpirun skips both).
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { allReducePeers, allReduceRows, distSuite, findMpirun, findTool, parseRankLines, sizeLabel } from "../../bench/suites/dist.ts";
import { evalRow, finishGenerate, generateConfig, generateRows, promptBatch, type GenConfig } from "../../bench/suites/generate.ts";
import { trainConfigs } from "../../bench/suites/train.ts";
import { getGpu, tempDir } from "../helpers.ts";

const tiny64 = trainConfigs(false, true).find((c) => c.name === "tiny-64")!;
const MICRO: GenConfig = { name: "tiny-64", hf: tiny64.hf, prompt: 8, newTokens: 4, batches: [1, 2], sentences: 2, directions: "en-x,x-en", maxNewTokens: 4 };
const positive = (x: number | undefined) => typeof x === "number" && Number.isFinite(x) && x > 0;

describe("bench generate", () => {
  test("the configs: tiny-256 on a CPU adapter, llama-124m on a GPU; batches 1 and 8", () => {
    expect(generateConfig(false, false)).toMatchObject({ name: "tiny-256", batches: [1, 8], sentences: 16, directions: "en-x,x-en" });
    expect(generateConfig(false, true)).toMatchObject({ sentences: 16, directions: "en-x" });
    expect(generateConfig(true, false).sentences).toBe(50);
    expect(generateConfig(true, false)).toMatchObject({ name: "llama-124m", batches: [1, 8] });
    const p = promptBatch(1000, 8, 3);
    expect(p.map((r) => r.length)).toEqual([8, 8, 8]);
    expect(p.flat().every((t) => t >= 3 && t < 1000)).toBe(true);
    expect(p[0]).not.toEqual(p[1]);
  });

  test(
    "micro config: prefill and decode rates finite and positive, each batch its row, the floor from the copy ceiling",
    async () => {
      const gpu = await getGpu();
      const rows = await generateRows(gpu, MICRO, 1);
      expect(rows.map((r) => r.name)).toEqual(["generate-tiny-64-b1", "generate-tiny-64-b2"]);
      for (const r of rows) {
        for (const x of [r.prefill_ms, r.prefill_tokens_per_s, r.decode_ms_per_step, r.decode_tokens_per_s, r.dispatches_per_decode_step]) expect(positive(x)).toBe(true);
        expect(r.prefill_tokens_per_s).toBeCloseTo((r.batch * 8) / (r.prefill_ms / 1e3), 6);
        expect(r.decode_tokens_per_s).toBeCloseTo(r.batch / (r.decode_ms_per_step / 1e3), 6);
        expect(r.param_bytes).toBe(4 * r.params);
      }
      finishGenerate({ rows }, { copy_gbps: 2 });
      expect(rows[0]!.decode_floor_ms).toBeCloseTo((rows[0]!.param_bytes / 2e9) * 1e3, 9);
      expect(positive(rows[0]!.decode_pct_of_floor)).toBe(true);
      await expect(generateRows(gpu, { ...MICRO, newTokens: 1 }, 1)).rejects.toThrow(/newTokens must be >= 2/);
    },
    30_000,
  );

  test(
    "micro config: the eval row runs alignx eval's function on UDHR eng↔deu and scales to 100 translations",
    async () => {
      const gpu = await getGpu();
      const e = await evalRow(gpu, MICRO);
      expect(e.name).toBe("eval-tiny-64");
      expect(e.directions).toEqual(["eng→deu", "deu→eng"]);
      expect(e.translations).toBe(4);
      expect(e.max_new_tokens).toBe(4);
      expect(e.vocab).toBeLessThanOrEqual(1024);
      for (const x of [e.seconds, e.seconds_per_100, e.generation_seconds, e.new_tokens, e.tokens_per_s]) expect(positive(x)).toBe(true);
      expect(e.seconds_per_100).toBeCloseTo((e.seconds / 4) * 100, 6);
      expect(e.generation_seconds).toBeLessThanOrEqual(e.seconds);
      expect(e.new_tokens).toBeLessThanOrEqual(4 * 4);
      const q = await evalRow(gpu, { ...MICRO, directions: "en-x" }); // --quick's: eng→deu only
      expect([q.directions, q.translations]).toEqual([["eng→deu"], 2]);
    },
    30_000,
  );
});

// What `mpirun -np 2 allreduce 3 1 262144 1048576` prints (rank 0's lines), with MPI's chatter around it.
const C_OUTPUT = [
  "[vm:12345] mca_base_component_repository_open: unable to open mca_btl_openib (ignored)",
  '{"n":262144,"ranks":2,"ok":1,"ms":[0.162833,0.206685,0.151755]}',
  '{"n":1048576,"ranks":2,"ok":1,"ms":[0.636927,0.677583,0.644431]}',
  "",
].join("\n");

describe("bench all-reduce", () => {
  test("the rank programs' output: parsed, rows as median ms and bytes / time, the peer ratio ours / C", () => {
    const lines = parseRankLines(C_OUTPUT, "allreduce.c", [262144, 1048576]);
    expect(lines).toEqual([
      { n: 262144, ranks: 2, ms: [0.162833, 0.206685, 0.151755] },
      { n: 1048576, ranks: 2, ms: [0.636927, 0.677583, 0.644431] },
    ]);
    const c = allReduceRows("c", lines);
    expect(c[0]).toMatchObject({ name: "allreduce-c-256K", floats: 262144, bytes: 1 << 20, ranks: 2, ms: 0.162833, min_ms: 0.151755 });
    expect(c[0]!.gbps).toBeCloseTo((1 << 20) / 0.162833e-3 / 1e9, 9);
    expect(c[1]!.name).toBe("allreduce-c-1M");
    const ours = allReduceRows("ours", [{ n: 262144, ranks: 2, ms: [0.4] }]);
    const peers = allReducePeers([...ours, ...c]);
    expect(peers).toHaveLength(1); // 1M: no row of ours, no ratio
    expect(peers[0]).toMatchObject({ name: "allreduce-256K", unit: "GB/s" });
    expect(peers[0]!.ratio).toBeCloseTo(0.162833 / 0.4, 9);
    expect([sizeLabel(1 << 18), sizeLabel(1 << 20), sizeLabel(1 << 22), sizeLabel(1000)]).toEqual(["256K", "1M", "4M", "1000"]);
  });

  test("bad output is refused, naming the program and the line", () => {
    expect(() => parseRankLines('{"n":1024,"ranks":2,"ok":0,"ms":[1]}', "allreduce.c")).toThrow(/allreduce.c: the all-reduce of 1024 floats gave wrong sums/);
    expect(() => parseRankLines('x\n{"n":1024,"ranks":2,"ok":1,"ms":[1,', "ours")).toThrow(/ours: output line 2 is not JSON/);
    expect(() => parseRankLines('{"n":1024,"ok":1,"ms":[1]}', "ours")).toThrow(/lacks n, ranks or ms/);
    expect(() => parseRankLines('{"n":1024,"ranks":2,"ok":1,"ms":[0]}', "ours")).toThrow(/ms must be positive/);
    expect(() => parseRankLines(C_OUTPUT, "allreduce.c", [262144, 4194304])).toThrow(/allreduce.c: no result for 4194304 floats/);
  });

  /** A PATH directory holding links to everything on PATH but the names matching `drop`. */
  const pathWithout = (drop: RegExp): string => {
    const bin = join(tempDir("alignx-bench-path-"), "bin"); // removed after the run (test/setup.ts)
    mkdirSync(bin);
    for (const dir of (process.env.PATH ?? "").split(":"))
      if (dir && existsSync(dir))
        for (const name of readdirSync(dir)) if (!drop.test(name) && !existsSync(join(bin, name))) symlinkSync(join(dir, name), join(bin, name));
    return bin;
  };

  test("the rank program refuses bad arguments, naming the one (exit 2)", () => {
    const run = (...args: string[]) => Bun.spawnSync({ cmd: [process.execPath, join(import.meta.dir, "..", "..", "bench", "suites", "dist.ts"), ...args], stderr: "pipe" });
    const bad = run("--ranks", "3", "x", "100");
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).toContain("argument 2 (x) must be a whole number >= 0");
    expect(run("3", "1", "100").stderr.toString()).toContain("the all-reduce rank program");
  });

  test(
    "without mpicc on PATH the C rows are skipped with the reason and ours still run; without mpirun both are",
    () => {
      const noMpicc = pathWithout(/^mpicc/);
      expect(findTool("mpicc", { PATH: noMpicc })).toBeNull();
      const env = { ...process.env, PATH: noMpicc };
      const o = { quick: true, sizes: [4096], reps: 2, warmup: 1, env };
      if (typeof findMpirun(env) === "string") {
        // No mpirun here: everything is skipped, saying so.
        const s = distSuite(o);
        expect(s.result).toBeUndefined();
        expect(s.skipped[0]!.why).toMatch(/mpirun/);
        return;
      }
      const s = distSuite(o);
      expect(s.skipped).toEqual([{ what: "allreduce-c-4K", why: expect.stringContaining("mpicc is not on PATH") }]);
      expect(s.result!.rows.map((r) => r.name)).toEqual(["allreduce-ours-4K"]);
      expect(positive(s.result!.rows[0]!.gbps)).toBe(true);
      expect(s.peers).toEqual([]);

      const none = distSuite({ ...o, env: { ...process.env, PATH: pathWithout(/^(mpicc|mpirun)/) } });
      expect(none.result).toBeUndefined();
      expect(none.skipped).toEqual([{ what: "allreduce-ours-4K, allreduce-c-4K", why: expect.stringContaining("mpirun is not on PATH") }]);
    },
    30_000,
  );

  test(
    "with mpirun and mpicc: both programs at a small size, exact sums, positive GB/s and a ratio",
    () => {
      if (typeof findMpirun() === "string" || !findTool("mpicc")) return; // the test above covers the skips
      const s = distSuite({ quick: true, sizes: [1 << 16], reps: 3, warmup: 1 });
      expect(s.skipped).toEqual([]);
      expect(s.result!.rows.map((r) => r.name)).toEqual(["allreduce-ours-64K", "allreduce-c-64K"]);
      for (const r of s.result!.rows) {
        expect(r.ranks).toBe(2);
        expect(r.runs).toHaveLength(3);
        expect(positive(r.gbps)).toBe(true);
      }
      expect(s.peers.map((p) => p.name)).toEqual(["allreduce-64K"]);
      expect(positive(s.peers[0]!.ratio)).toBe(true);
    },
    30_000,
  );
});
