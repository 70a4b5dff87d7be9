#!/usr/bin/env bun
/**
 * The `alignx` command. Exit codes: 0 ok, 1 failure, 2 usage error.
 * One file per command under src/cli/; this file only wires them with cac.
 */
import { cac } from "cac";
import { writeSync } from "node:fs";
import pkg from "../../package.json" with { type: "json" };
import { main as benchMain } from "../../bench/run.ts";
import { generate } from "./generate.ts";
import { info } from "./info.ts";
import { pack } from "./pack.ts";
import { parity } from "./parity.ts";
import { runScript } from "./run.ts";
import { score } from "./score.ts";
import { registerTrain } from "./train.ts";
import { registerAlign } from "./align.ts";
import { registerEval } from "./eval.ts";
import { verify } from "./verify.ts";
import { agreedToStop } from "../dist/index.ts";
import { adapterOption, parseArgs, UsageError } from "./usage.ts";

const cli = cac("alignx");
cli.option("--adapter <name>", "Adapter: substring of its description, or its index in `alignx info` (env ALIGNX_ADAPTER)");
cli.option("--cpu", "Use the CPU adapter (lavapipe) even when a GPU is present (env ALIGNX_CPU=1)");

cli
  .command("info", "Show the WebGPU adapter, its features and limits, and a quick speed self-test")
  .option("--json", "Print machine-readable JSON")
  .option("--no-selftest", "Skip the copy/matmul self-test")
  .action((o: { adapter?: string; cpu?: boolean; json?: boolean; selftest?: boolean }) =>
    info({ adapter: o.adapter, cpu: o.cpu, json: o.json, selftest: o.selftest }),
  );

cli
  .command("parity", "One forward + loss + backward of a HF checkpoint on a batch; logits, loss and gradients to a .safetensors file")
  .option("--model <dir>", "Checkpoint directory (config.json + *.safetensors)")
  .option("--batch <file>", "BATCH.json: {input_ids, labels?, attention_mask?}")
  .option("--out <file>", "Where to write OUT.safetensors")
  .option("--expected <file>", "Also check the outputs against this reference (tools/parity_reference.py's): exit 1 past the tolerances")
  .option("--stage <n>", "0: next-token loss (default); 1: AlignX stage 1 (BATCH.json adds src_tgt_index, src_lang, tgt_lang; OUT adds loss_ntp/ctr/lam and the classifier's gradients)")
  .action((o: { adapter?: string; cpu?: boolean; model?: string; batch?: string; out?: string; expected?: string; stage?: string | number }) => {
    for (const k of ["model", "batch", "out"] as const)
      if (typeof o[k] !== "string" || o[k] === "") throw new UsageError(`parity: --${k} is required (see alignx parity --help)`);
    if (o.expected !== undefined && (typeof o.expected !== "string" || o.expected === "")) throw new UsageError("parity: --expected needs a file");
    if (o.stage !== undefined && String(o.stage) !== "0" && String(o.stage) !== "1") throw new UsageError(`parity: --stage must be 0 or 1, got ${String(o.stage)}`);
    const stage = o.stage !== undefined && String(o.stage) === "1" ? 1 : 0;
    return parity({ model: o.model!, batch: o.batch!, out: o.out!, expected: o.expected, stage, adapter: o.adapter, cpu: o.cpu });
  });

cli
  .command("generate", "Continue a prompt with a HF checkpoint and its tokenizer (KV cache; greedy or sampled)")
  .option("--model <dir>", "Checkpoint directory (config.json, *.safetensors, tokenizer.json)")
  .option("--prompt <text>", "The text to continue")
  .option("--max-new-tokens <n>", "Tokens to generate at most, 1..1048576 (default 64)")
  .option("--temperature <t>", "0 = greedy (default), else sampling temperature (>= 0)")
  .option("--top-k <k>", "Sample from the k most likely tokens (0 = off)")
  .option("--top-p <p>", "Nucleus sampling mass in (0, 1] (1 = off)")
  .option("--seed <s>", "Sampling seed, 0..4294967295 (default 0)")
  .action((o: { adapter?: string; cpu?: boolean; model?: string; prompt?: string; maxNewTokens?: string; temperature?: string; topK?: string; topP?: string; seed?: string }) =>
    generate({
      model: o.model ?? "",
      prompt: o.prompt as string,
      maxNewTokens: o.maxNewTokens,
      temperature: o.temperature,
      topK: o.topK,
      topP: o.topP,
      seed: o.seed,
      adapter: o.adapter,
      cpu: o.cpu,
    }),
  );

cli
  .command("pack [...inputs]", "Tokenize a corpus into shards + manifest.json for training (stage1, stage2 or pretrain examples)")
  .usage("pack --tokenizer T --out DIR [--task stage1|stage2|pretrain] [options] INPUTS...   (INPUTS: paths, globs, or udhr[:LANG,...])")
  .option("--tokenizer <path>", "tokenizer.json, or a model directory holding one")
  .option("--out <dir>", "Output directory (refused if it exists, unless --overwrite)")
  .option("--task <task>", "stage1 (translation instructions with spans; default), stage2 (translation + general instructions), pretrain (fixed-length text)")
  .option("--format <fmt>", "Input format, when detection is not enough: flores, moses, tsv, jsonl, alpaca, squad, text, udhr")
  .option("--langs <list>", "Languages to keep, e.g. eng,deu,zho (default: the ten AlignX languages present)")
  .option("--pairs <mode>", "english-centric (default) or all: which translation directions")
  .option("--cutoff <n>", "Most tokens per example (default 512)")
  .option("--seq-len <n>", "Tokens per pretraining sequence (default 512)")
  .option("--mix <weights>", "stage2: translation=W,general=W (default 1:1)")
  .option("--seed <n>", "Shuffle seed, 0..4294967295 (default 0)")
  .option("--workers <n>", "Tokenizing threads, 0..256 (default: one per core; 0 = none)")
  .option("--shard-size <size>", "Largest shard, e.g. 64M (default)")
  .option("--lang <code>", "Language of inputs that do not say it (plain text, instruction files)")
  .option("--text-unit <unit>", "Plain text: one document per line (default) or per paragraph")
  .option("--overwrite", "Replace an existing output directory (only one written by pack)")
  .option("--skip-bad-records", "Count and report bad input records instead of stopping at the first")
  .action((inputs: string[], o: Record<string, unknown>) => pack({ ...o, inputs }));

cli
  .command("verify <target>", "Check corpus shards (a pack output directory, its manifest.json, or shard files/globs)")
  .option("--json", "Print machine-readable JSON")
  .action((target: string, o: { json?: boolean }) => verify({ target: String(target), json: o.json }));

cli
  .command("score", "BLEU, chrF, chrF++ of a hypothesis file against reference files, as sacreBLEU 2.x computes and prints them")
  .usage("score --hyp FILE --ref FILE [--ref FILE2 ...] [--metrics bleu,chrf,chrf++] [--tokenize 13a|intl|zh|char|none] [--lc] [--sentence] [--ci [--seed S]] [--json]")
  .option("--hyp <file>", "Hypotheses, one segment per line (UTF-8)")
  .option("--ref <file>", "References, one segment per line; repeat for several references", { type: [String] })
  .option("--metrics <list>", "Comma-separated: bleu (default), chrf, chrf++")
  .option("--tokenize <t>", "BLEU tokenizer: 13a (default), intl, zh, char, none; spm, flores101, flores200 need --spm-model")
  .option("--spm-model <file>", "SentencePiece model for --tokenize spm / flores101 / flores200 (spBLEU: sacreBLEU's FLORES model file)")
  .option("--lc", "Lowercase hypotheses and references (every metric)")
  .option("--sentence", "A score per line (BLEU with the effective order), as sacreBLEU --sentence-level")
  .option("--ci", "Bootstrap 95% confidence interval (1000 resamples), as sacreBLEU --confidence")
  .option("--seed <s>", "Bootstrap seed, 0..4294967295 (default 12345, sacreBLEU's)")
  .option("--width <n>", "Decimals printed, 0..10 (default 1)")
  .option("--json", "sacreBLEU's JSON output (-f json); with --sentence one JSON object per line")
  .action((o: Record<string, unknown>) =>
    score({ hyp: o.hyp, ref: o.ref, metrics: o.metrics, tokenize: o.tokenize, spmModel: o.spmModel, lc: o.lc === true, sentence: o.sentence === true, ci: o.ci === true, seed: o.seed, width: o.width, json: o.json === true }),
  );

registerTrain(cli, () => ({}));
registerAlign(cli);
registerEval(cli);

cli
  .command("bench [...options]", "The kernel and training benchmark suite (bench/run.ts): alignx bench --help lists its options")
  .usage("bench [--quick] [--only REGEX] [--no-train] [--no-peers] [--reps N] [--out DIR] ...   (everything after bench goes to the suite)");

cli
  .command("run <file> [...args]", "Run a TypeScript/JavaScript file with navigator.gpu and the GPU* globals installed")
  .usage("run [--adapter NAME | --cpu] FILE.ts [args...]   (everything after FILE goes to the script)");

cli.help();
cli.version(pkg.version);
cli.outputVersion = () => console.log(`alignx/${pkg.version} bun-${Bun.version} ${process.platform}-${process.arch}`);

/**
 * Say why and exit. Ranks that agreed to stop (dist `firstFailure`) meet once more after saying it: the launcher
 * ends the job at the first non-zero exit, and a rank still on its way to the message would be killed silently
 * (at most 10 s: a rank that died meanwhile must not hold the others).
 */
async function fail(e: unknown): Promise<never> {
  const code = typeof (e as { exitCode?: unknown })?.exitCode === "number" ? (e as { exitCode: number }).exitCode : 1;
  const msg = e instanceof Error ? e.message : String(e);
  writeSync(2, `alignx: ${msg}\n`);
  if (process.env.ALIGNX_DEBUG && e instanceof Error && e.stack) console.error(e.stack);
  const comm = agreedToStop();
  if (comm) await Promise.race([comm.barrierAsync().catch(() => {}), Bun.sleep(10_000)]);
  process.exit(code === 2 || (e as Error)?.name === "CACError" ? 2 : code);
}

/** Global options (`--adapter NAME`, `--adapter=NAME`, `--cpu`) at the front of `args`, applied to the env. */
function takeGlobalOptions(args: string[], where: string): void {
  while (args[0]?.startsWith("-")) {
    const opt = args.shift()!;
    if (opt === "--cpu") process.env.ALIGNX_CPU = "1";
    else if (opt === "--adapter" || opt.startsWith("--adapter=")) {
      process.env.ALIGNX_ADAPTER = adapterOption(opt === "--adapter" ? (args.shift() ?? "") : opt.slice("--adapter=".length), where);
    } else if (opt === "--help" || opt === "-h") {
      args.unshift(opt);
      return;
    } else throw new UsageError(`${where}unknown option ${opt}`);
  }
}

async function main(argv: string[]): Promise<number> {
  // `run` passes everything after FILE to the script untouched, so it is parsed here, not by cac.
  const runAt = argv.indexOf("run");
  const before = argv.slice(0, runAt);
  const isRun = runAt >= 0 && before.every((a, i) => a.startsWith("-") || before[i - 1] === "--adapter");
  if (isRun) {
    takeGlobalOptions(before, "");
    if (before.length) throw new UsageError(`unexpected ${before[0]} before run`);
    const rest = argv.slice(runAt + 1);
    takeGlobalOptions(rest, "run: ");
    if (rest[0] === "--help" || rest[0] === "-h") {
      cli.parse(["", "", "run", "--help"], { run: false });
      return 0;
    }
    const file = rest.shift();
    if (!file) throw new UsageError("run: missing FILE (usage: alignx run [--adapter NAME | --cpu] FILE.ts [args...])");
    return runScript(file, rest);
  }
  // `bench` hands everything after it to the suite's own parser (global options before it apply).
  const benchAt = argv.indexOf("bench");
  const beforeBench = argv.slice(0, benchAt);
  if (benchAt >= 0 && beforeBench.every((a, i) => a.startsWith("-") || beforeBench[i - 1] === "--adapter")) {
    takeGlobalOptions(beforeBench, "");
    await benchMain(["", "alignx bench", ...argv.slice(benchAt + 1)]);
    return 0;
  }
  parseArgs(cli, argv);
  if (cli.options.help || cli.options.version) return 0;
  adapterOption(cli.options.adapter); // one rule for every command: an empty --adapter is a usage error
  if (!cli.matchedCommand) {
    if (cli.args.length) throw new UsageError(`unknown command '${cli.args[0]}' (see alignx --help)`);
    const unknown = Object.keys(cli.options).filter((k) => k !== "--" && !cli.globalCommand.hasOption(k));
    if (unknown.length) throw new UsageError(`unknown option --${unknown[0]} (see alignx --help)`);
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
  await fail(e);
}
