#!/usr/bin/env bun
/**
 * The `alignx` command. Exit codes: 0 ok, 1 failure, 2 usage error.
 * One file per command under src/cli/; this file only wires them with cac.
 */
import { cac } from "cac";
import pkg from "../../package.json" with { type: "json" };
import { info } from "./info.ts";
import { runScript, UsageError } from "./run.ts";

const cli = cac("alignx");
cli.option("--adapter <name>", "Adapter: substring of its description, or its index in `alignx info` (env ALIGNX_ADAPTER)");
cli.option("--cpu", "Use the CPU adapter (lavapipe) even when a GPU is present (env ALIGNX_CPU=1)");

cli
  .command("info", "Show the WebGPU adapter, its features and limits, and a quick speed self-test")
  .option("--json", "Print machine-readable JSON")
  .option("--no-selftest", "Skip the copy/matmul self-test")
  .action((o: { adapter?: string; cpu?: boolean; json?: boolean; selftest?: boolean }) =>
    info({ adapter: o.adapter === undefined ? undefined : String(o.adapter), cpu: o.cpu, json: o.json, selftest: o.selftest }),
  );

cli
  .command("run <file> [...args]", "Run a TypeScript/JavaScript file with navigator.gpu and the GPU* globals installed")
  .usage("run [--adapter NAME | --cpu] FILE.ts [args...]   (everything after FILE goes to the script)");

cli.help();
cli.version(pkg.version);

function fail(e: unknown): never {
  const code = typeof (e as { exitCode?: unknown })?.exitCode === "number" ? (e as { exitCode: number }).exitCode : 1;
  const msg = e instanceof Error ? e.message : String(e);
  console.error(`alignx: ${msg}`);
  if (process.env.ALIGNX_DEBUG && e instanceof Error && e.stack) console.error(e.stack);
  process.exit(code === 2 || (e as Error)?.name === "CACError" ? 2 : code);
}

async function main(argv: string[]): Promise<number> {
  // `run` passes everything after FILE to the script untouched, so it is parsed here, not by cac.
  const runAt = argv.indexOf("run");
  if (runAt >= 0 && argv.slice(0, runAt).every((a, i, xs) => a.startsWith("-") || xs[i - 1] === "--adapter")) {
    const rest = argv.slice(runAt + 1);
    const pre = argv.slice(0, runAt);
    const ai = pre.indexOf("--adapter");
    if (ai >= 0) process.env.ALIGNX_ADAPTER = pre[ai + 1] ?? "";
    if (pre.includes("--cpu")) process.env.ALIGNX_CPU = "1";
    while (rest[0]?.startsWith("-")) {
      const opt = rest.shift()!;
      if (opt === "--cpu") process.env.ALIGNX_CPU = "1";
      else if (opt === "--adapter") process.env.ALIGNX_ADAPTER = rest.shift() ?? "";
      else if (opt === "--help" || opt === "-h") {
        cli.parse(["", "", "run", "--help"], { run: false });
        return 0;
      } else throw new UsageError(`alignx run: unknown option ${opt} (options go before FILE; the rest is the script's)`);
    }
    const file = rest.shift();
    if (!file) throw new UsageError("alignx run: missing FILE (usage: alignx run [--adapter NAME | --cpu] FILE.ts [args...])");
    return runScript(file, rest);
  }
  cli.parse(["", "", ...argv], { run: false });
  if (cli.options.help || cli.options.version) return 0;
  if (!cli.matchedCommand) {
    if (cli.args.length) throw new UsageError(`unknown command '${cli.args[0]}' (see alignx --help)`);
    cli.outputHelp();
    return 2;
  }
  const r = await cli.runMatchedCommand();
  return typeof r === "number" ? r : 0;
}

try {
  const code = await main(process.argv.slice(2));
  if (code !== 0) process.exit(code);
} catch (e) {
  fail(e);
}
