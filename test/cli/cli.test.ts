// End-to-end tests of the `alignx` command: each test spawns `bun src/cli/main.ts …` from the repo root
// (or `bun --preload ./src/globals.ts SCRIPT`) with a hard timeout, and checks exit code and output.
import { describe, expect, test } from "bun:test";
import { join, resolve } from "node:path";
import pkg from "../../package.json" with { type: "json" };

const ROOT = resolve(import.meta.dir, "..", "..");
const MAIN = join(ROOT, "src/cli/main.ts");
const FIXTURES = "test/fixtures/user-script";
const SPAWN_TIMEOUT_MS = 45_000;
const TEST_TIMEOUT_MS = 60_000;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a command from the repo root; SIGKILL after SPAWN_TIMEOUT_MS so nothing can hang the suite. */
async function sh(cmd: string[], opts: { cwd?: string } = {}): Promise<Result> {
  const env: Record<string, string | undefined> = { ...process.env };
  // The choice of adapter must come from the command line of each test, not from the caller's shell.
  delete env.ALIGNX_ADAPTER;
  delete env.ALIGNX_CPU;
  const proc = Bun.spawn({
    cmd,
    cwd: opts.cwd ?? ROOT,
    env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: SPAWN_TIMEOUT_MS,
    killSignal: "SIGKILL",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (proc.signalCode) throw new Error(`${cmd.join(" ")}: killed by ${proc.signalCode} (timeout ${SPAWN_TIMEOUT_MS} ms?)\n${stdout}\n${stderr}`);
  return { code, stdout, stderr };
}

const alignx = (...args: string[]) => sh([process.execPath, MAIN, ...args]);

/** The line square.ts prints: x[i] = i*i + K for i < 4096, summed. */
function squareLine(k: number, args: string[]): string {
  const n = 4096;
  let sum = 0n;
  for (let i = 0n; i < BigInt(n); i++) sum += i * i + BigInt(k);
  return `square ok K=${k} n=${n} sum=${sum} instanceof=true args=${args.join(",")}`;
}

describe("alignx info", () => {
  test(
    "prints the adapter and a self-test with positive copy and matmul speeds",
    async () => {
      const r = await alignx("info");
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^adapter\s+\S.*$/m);
      const m = r.stdout.match(/^self-test\s+copy (\S+) GB\/s .*matmul (\S+) GFLOP\/s/m);
      expect(m).not.toBeNull();
      const copy = Number(m![1]);
      const matmul = Number(m![2]);
      expect(Number.isFinite(copy)).toBe(true);
      expect(Number.isFinite(matmul)).toBe(true);
      expect(copy).toBeGreaterThan(0);
      expect(matmul).toBeGreaterThan(0);
      expect(r.stdout).toMatch(/^status\s+ok/m);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "--json --no-selftest prints JSON with adapter, features and limits, and no self-test",
    async () => {
      const r = await alignx("info", "--json", "--no-selftest");
      expect(r.code).toBe(0);
      const j = JSON.parse(r.stdout) as {
        adapter: { description: unknown };
        features: unknown;
        limits: { maxStorageBufferBindingSize: unknown };
        selftest?: unknown;
      };
      expect(typeof j.adapter.description).toBe("string");
      expect((j.adapter.description as string).length).toBeGreaterThan(0);
      expect(Array.isArray(j.features)).toBe(true);
      for (const f of j.features as unknown[]) expect(typeof f).toBe("string");
      expect(typeof j.limits.maxStorageBufferBindingSize).toBe("number");
      expect(j.limits.maxStorageBufferBindingSize as number).toBeGreaterThan(0);
      expect(j.selftest).toBeUndefined();
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "--adapter no-such-gpu exits 2 and lists the available adapters",
    async () => {
      const r = await alignx("--adapter", "no-such-gpu", "info");
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain("no-such-gpu");
      expect(r.stderr).toContain("[0]");
    },
    TEST_TIMEOUT_MS,
  );
});

describe("no driver", () => {
  test(
    "with no Vulkan driver, info says what to install and exits 1 (Dawn's Null backend is not an adapter)",
    async () => {
      const proc = Bun.spawn({
        cmd: [process.execPath, MAIN, "info"],
        cwd: ROOT,
        env: { ...process.env, VK_DRIVER_FILES: "/nonexistent/icd.json", VK_ICD_FILENAMES: "/nonexistent/icd.json" },
        stdout: "pipe",
        stderr: "pipe",
        timeout: SPAWN_TIMEOUT_MS,
      });
      const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      expect(code).toBe(1);
      expect(out).toBe("");
      expect(err).toContain("No WebGPU adapter found");
      expect(err).toContain("mesa-vulkan-drivers");
    },
    TEST_TIMEOUT_MS,
  );
});

describe("usage", () => {
  test(
    "an unknown command exits 2 and names it",
    async () => {
      const r = await alignx("frobnicate");
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("frobnicate");
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "an unknown option exits 2",
    async () => {
      const r = await alignx("info", "--bogus");
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("--bogus");
      const g = await alignx("--bogus");
      expect(g.code).toBe(2);
      expect(g.stderr).toContain("unknown option --bogus");
      const beforeRun = await alignx("--bogus", "run", `${FIXTURES}/square.ts`, "1");
      expect(beforeRun.code).toBe(2);
      expect(beforeRun.stderr).toContain("unknown option --bogus");
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "--adapter=NAME and an out-of-range index are honoured everywhere",
    async () => {
      for (const args of [
        ["--adapter=no-such-gpu", "info", "--no-selftest"],
        ["--adapter=no-such-gpu", "run", `${FIXTURES}/square.ts`, "1"],
        ["run", "--adapter=no-such-gpu", `${FIXTURES}/square.ts`, "1"],
        ["--adapter", "99", "info", "--no-selftest"],
      ]) {
        const r = await alignx(...args);
        expect(r.code).toBe(2);
        expect(r.stderr).toContain("Available adapters");
      }
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "--version prints the package.json version and exits 0",
    async () => {
      const r = await alignx("--version");
      expect(r.code).toBe(0);
      expect(r.stdout).toStartWith(`alignx/${pkg.version}`);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "--help exits 0 and lists the info and run commands",
    async () => {
      const r = await alignx("--help");
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^\s+info\s/m);
      expect(r.stdout).toMatch(/^\s+run <file>/m);
    },
    TEST_TIMEOUT_MS,
  );
});

describe("alignx run", () => {
  test(
    "a missing file exits 2 and names the file",
    async () => {
      const r = await alignx("run", "no-such-script-3f9a.ts");
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("no-such-script-3f9a.ts");
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "no file exits 2",
    async () => {
      const r = await alignx("run");
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("missing FILE");
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "runs a plain-WebGPU user script with navigator.gpu and the GPU* globals, passing argv through",
    async () => {
      const r = await alignx("run", `${FIXTURES}/square.ts`, "7", "--flag");
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(squareLine(7, ["7", "--flag"]));
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "options before FILE are alignx's, everything after FILE (even --help) is the script's",
    async () => {
      const r = await alignx("--adapter", "0", "run", "--cpu", `${FIXTURES}/square.ts`, "11", "--help", "--cpu");
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(squareLine(11, ["11", "--help", "--cpu"]));
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "--adapter applies to the script's requestAdapter: an unknown adapter exits 2",
    async () => {
      const r = await alignx("--adapter", "no-such-gpu", "run", `${FIXTURES}/square.ts`, "1");
      expect(r.code).toBe(2);
      expect(r.stdout).not.toContain("square ok");
      expect(r.stderr).toContain("[0]");
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "a script that throws exits 1 and prints the error",
    async () => {
      const r = await alignx("run", `${FIXTURES}/throws.ts`);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("boom from user script");
    },
    TEST_TIMEOUT_MS,
  );
});

describe("bun --preload ./src/globals.ts", () => {
  test(
    "gives a plain Bun script the same globals as alignx run",
    async () => {
      const r = await sh([process.execPath, "--preload", "./src/globals.ts", `${FIXTURES}/square.ts`, "7", "--flag"]);
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(squareLine(7, ["7", "--flag"]));
    },
    TEST_TIMEOUT_MS,
  );
});

describe("alignx bench", () => {
  test(
    "runs the suite from the CLI: ceilings, the asked kernel cases, the JSON; bench --help lists its options",
    async () => {
      const { mkdtempSync, readFileSync, rmSync } = await import("node:fs");
      const { tmpdir } = await import("node:os");
      const out = mkdtempSync(join(tmpdir(), "alignx-bench-"));
      try {
        const r = await sh(["bun", MAIN, "--cpu", "bench", "--quick", "--reps", "1", "--only", "^add$", "--no-train", "--no-peers", "--out", out]);
        expect(r.code).toBe(0);
        expect(r.stdout).toMatch(/ceilings copy [\d.]+ GB\/s, matmul [\d.]+ GFLOP\/s/);
        expect(r.stdout).toMatch(/^add +1048576 +f32/m);
        const res = JSON.parse(readFileSync(join(out, "latest.json"), "utf8"));
        expect(res.kernels.map((k: { name: string }) => k.name)).toContain("add");
        expect(res.ceilings.copy_gbps).toBeGreaterThan(0);
        expect(Object.keys(res.autotune).length).toBeGreaterThan(0);
        const h = await sh(["bun", MAIN, "bench", "--help"]);
        expect(h.code).toBe(0);
        expect(h.stdout).toContain("alignx bench");
        expect(h.stdout).toContain("--quick");
        // Bad options: named, exit 2, before the device is opened.
        for (const [args, msg] of [
          [["--reps", "0"], "--reps must be a whole number >= 1, got 0"],
          [["--only", "("], "--only:"],
          [["--deadline", "soon"], "--deadline must be a number of seconds > 0, got soon"],
        ] as const) {
          const bad = await sh(["bun", MAIN, "bench", ...args]);
          expect(bad.code).toBe(2);
          expect(bad.stderr).toContain(msg);
        }
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    },
    TEST_TIMEOUT_MS,
  );
});

describe("option values (every command: src/cli/usage.ts parseArgs, numOption, adapterOption)", () => {
  const GEN = ["generate", "--model", "test/fixtures/parity/llama", "--prompt", "hi"];
  const PACK = ["pack", "--tokenizer", "no-such-tokenizer.json", "--out", "no-such-out-dir", "udhr"];
  /** Exit 2, the message on stderr, nothing about an unknown option, no doubled dashes. */
  async function usage(args: string[], message: string): Promise<void> {
    const r = await alignx(...args);
    expect(`${args.join(" ")} → ${r.stderr.trim()}`).toBe(`${args.join(" ")} → alignx: ${message}`);
    expect(r.code).toBe(2);
  }

  test(
    "negative numbers as separate words reach the option's own check",
    async () => {
      await usage([...GEN, "--temperature", "-1"], "generate: --temperature must be a number >= 0, got -1");
      await usage([...GEN, "--top-k", "-3"], "generate: --top-k must be an integer >= 0, got -3");
      await usage([...GEN, "--max-new-tokens", "-1"], "generate: --max-new-tokens must be an integer in [1, 1048576], got -1");
      await usage([...GEN, "--seed", "-5"], "generate: --seed must be an integer in [0, 4294967295], got -5");
      await usage([...GEN, "--top-p", "-0.5"], "generate: --top-p must be a number in (0, 1], got -0.5");
      await usage([...GEN, "--temperature", "abc"], 'generate: --temperature must be a number, got "abc"');
      await usage([...PACK, "--workers", "-1"], "pack: --workers must be an integer in [0, 256], got -1");
      await usage([...GEN, "--seed", "3", "--seed", "4"], "--seed is given more than once");
      await usage(["bench", "--reps", "-1"], "--reps must be a whole number >= 1, got -1");
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "numbers out of range are usage errors naming the flag, the range and the value",
    async () => {
      await usage([...GEN, "--max-new-tokens", "1e9"], "generate: --max-new-tokens must be an integer in [1, 1048576], got 1e9");
      await usage([...GEN, "--seed", "1e20"], "generate: --seed must be an integer in [0, 4294967295], got 1e20");
      await usage([...GEN, "--top-k", "1e20"], "generate: --top-k must be an integer >= 0 and below 2^53, got 1e20");
      await usage([...GEN, "--temperature", "1e400"], 'generate: --temperature must be a number, got "1e400"');
      await usage([...PACK, "--seed", "1e20"], "pack: --seed must be an integer in [0, 4294967295], got 1e20");
      await usage([...PACK, "--cutoff", "1e300"], "pack: --cutoff must be an integer >= 8 and below 2^53, got 1e300");
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "an empty --adapter is a usage error everywhere, and --adapter= takes no word after it",
    async () => {
      const msg = "--adapter needs a value: a substring of the adapter's description, or its index in alignx info";
      await usage(["--adapter=", "info", "--no-selftest"], msg);
      await usage(["--adapter", "", "info", "--no-selftest"], msg);
      await usage(["info", "--no-selftest", "--adapter="], msg);
      await usage(["--adapter=", "run", `${FIXTURES}/square.ts`, "1"], msg);
      await usage(["--adapter", "", "run", `${FIXTURES}/square.ts`, "1"], msg);
      await usage(["run", "--adapter", "", `${FIXTURES}/square.ts`, "1"], `run: ${msg}`);
      await usage([...GEN, "--adapter="], msg);
      // `--opt=` is the empty value, not the next word: the number check sees "", and the word is left over.
      await usage([...GEN, "--temperature="], 'generate: --temperature must be a number, got ""');
      await usage([...GEN, "--temperature=", "0.5"], "Unused args: `0.5`");
    },
    TEST_TIMEOUT_MS,
  );

  test("values reach the command as typed: negative, dash-led, numeric-looking, empty", async () => {
    const { cac } = await import("cac");
    const { parseArgs } = await import("../../src/cli/usage.ts");
    const cli = cac("t");
    cli.option("--adapter <name>", "");
    cli.command("gen [...inputs]", "").option("--prompt <text>", "").option("--top-k <k>", "").option("--skip-bad-records", "").option("--no-selftest", "");
    const parse = (...argv: string[]) => {
      const { args, options } = parseArgs(cli, argv);
      return { args, options: Object.fromEntries(Object.entries(options).filter(([k]) => k !== "--")) };
    };
    expect(parse("gen", "--prompt", "007", "--top-k=-3", "--adapter", "")).toEqual({ args: [], options: { prompt: "007", topK: "-3", adapter: "", selftest: true } });
    expect(parse("gen", "--prompt", "-x", "--skip-bad-records", "a.txt", "--no-selftest")).toEqual({
      args: ["a.txt"],
      options: { prompt: "-x", skipBadRecords: true, selftest: false },
    });
    expect(parse("gen", "--prompt=", "b.txt")).toEqual({ args: ["b.txt"], options: { prompt: "", selftest: true } });
    expect(parse("gen", "--prompt", " 1e3 ", "--", "--top-k", "-1")).toEqual({ args: [], options: { prompt: " 1e3 ", selftest: true } });
  });
});

describe("alignx run: errors in the script", () => {
  test(
    "a syntax error names the file, line and column, with the line and a caret (exit 1)",
    async () => {
      const r = await alignx("run", `${FIXTURES}/syntax_error.js`);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`alignx: ${FIXTURES}/syntax_error.js:5:11: Unexpected ;\n  const b = ;\n            ^\n`);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "an uncaptured GPU error (WGSL that does not compile, no error scope) fails the run with Dawn's message",
    async () => {
      for (const cmd of [
        [process.execPath, MAIN, "run", `${FIXTURES}/bad_wgsl.ts`],
        [process.execPath, "--preload", "./src/globals.ts", `${FIXTURES}/bad_wgsl.ts`],
      ]) {
        const r = await sh(cmd);
        expect(r.code).toBe(1);
        expect(r.stdout).toBe("module created\n"); // stopped before the script's next step
        expect(r.stderr).toStartWith("alignx: uncaptured WebGPU validation error: Error while parsing WGSL: :3:16 error: cannot convert value of type 'abstract-float' to type 'u32'\n  let x: u32 = 1.5;\n");
        expect(r.stderr).not.toContain(">>> JS Device Error Callback");
      }
      // A handler that cancels the event (preventDefault) keeps the run going.
      const h = await alignx("run", `${FIXTURES}/bad_wgsl.ts`, "handled");
      expect(h.stderr).toBe("");
      expect(h.stdout).toBe("module created\nscript finished, handled true\n");
      expect(h.code).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "GPUShaderModule.getCompilationInfo() gives the WGSL error's line, column, offset and length",
    async () => {
      const r = await alignx("run", `${FIXTURES}/compilation_info.ts`);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({
        good: 0,
        bad: [{ type: "error", lineNum: 3, linePos: 16, offset: 55, length: 3, message: "cannot convert value of type 'abstract-float' to type 'u32'" }],
        marked: "1.5",
        scoped: true,
        instance: true,
        same: true,
      });
    },
    TEST_TIMEOUT_MS,
  );
});
