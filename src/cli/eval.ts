/**
 * `alignx eval --model DIR --data FLORES_DIR [--langs L,...] [--directions en-x,x-en|all] [--max-sentences N]
 *  [--out DIR] [--batch-size N] [--max-new-tokens N] [--tokenize T] [--json]`: the paper's translation evaluation
 * (src/eval/eval_report.ts): every direction translated with the Alpaca translation prompt and greedy decoding,
 * BLEU, chrF++, the off-target rate and tokens/s per direction; OUT/report.json, OUT/hyp.<src>-<tgt>.txt and
 * OUT/ref.<lang>.txt, and a table on stdout (the report's JSON with --json).
 *
 * `alignx eval --align-report --model DIR --data FLORES_DIR [--langs ...] [--max-sentences N (200)] [--out DIR]`:
 * the representation analysis instead (src/eval/align_report.ts): per layer retrieval, cosine gap, CKA and the
 * language-ID probe; OUT/alignment.json and OUT/alignment.svg.
 *
 * Every input is checked before the device opens: a missing or non-directory --model, a model directory without
 * tokenizer.json or config.json, an unknown language code, a FLORES directory lacking a requested language (the
 * file expected is named), a bad number (--max-sentences 0), an unknown --directions or --tokenize, an OUT
 * holding a finished report (without --overwrite) → exit 2 with the reason. The report is written last and
 * atomically, so an OUT without one is an unfinished run.
 */
import type { CAC } from "cac";
import { existsSync, statSync } from "node:fs";
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import "../tensor/index.ts"; // registers the ops' tuners, which Gpu.open({ tune: true }) runs
import { CorpusError } from "../data/corpus.ts";
import { ALIGNX_LANGS, normalizeLang } from "../data/languages.ts";
import { specialPrefix } from "../data/prompt.ts";
import { checkTokenizerFits, loadTokenizer } from "../data/tokenizer.ts";
import { alignmentAnalysis, alignmentSvg, alignmentTable } from "../eval/align_report.ts";
import { directionMetrics, evalDirections, parseDirections, PIVOT, runTranslationEval, translationTable, type DirectionMode } from "../eval/eval_report.ts";
import { EvalInputError, loadFloresSet, type FloresSet } from "../eval/flores_set.ts";
import { LanguageDetector } from "../eval/lid.ts";
import { isTokenizerName, SPM_TOKENIZERS, TOKENIZERS } from "../eval/tokenizers.ts";
import { defaultBatchSize, translationPromptIds } from "../eval/translate.ts";
import { Gpu } from "../gpu/index.ts";
import { openCommandGpu } from "./gpu.ts";
import { readHfConfig, writeBytesAtomic } from "../io/index.ts";
import { LlamaModel } from "../nn/llama.ts";
import { listOption, numOption, SEED, UsageError } from "./usage.ts";

export interface EvalCliOptions {
  adapter?: string;
  cpu?: boolean;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  /** The table or JSON (default: stdout). */
  print?: (text: string) => void;
  /** Use this device (tests); it is not destroyed here. */
  gpu?: Gpu;
}

/** Default --max-new-tokens: room for FLORES's longest sentences in byte-level tokenizations. */
export const DEFAULT_MAX_NEW_TOKENS = 256;
/** Default --max-sentences of --align-report. */
export const DEFAULT_ALIGN_SENTENCES = 200;

function stamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** Errors of the inputs (files, languages) as usage errors naming the command. */
const asUsage = (e: unknown): never => {
  if (e instanceof EvalInputError || (e instanceof CorpusError && e.exitCode === 2)) throw new UsageError(`eval: ${e.message}`);
  throw e;
};

export async function evalCli(o: Record<string, unknown>, cli: EvalCliOptions = {}): Promise<number> {
  const cmd = "eval";
  const log = cli.log ?? ((l: string) => console.error(l));
  const print = cli.print ?? ((t: string) => process.stdout.write(`${t}\n`));
  const str = (flag: string, v: unknown): string | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== "string" || v === "") throw new UsageError(`${cmd}: --${flag} needs a value`);
    return v;
  };
  const modelDir = str("model", o.model);
  if (modelDir === undefined) throw new UsageError(`${cmd}: --model DIR is required (see alignx eval --help)`);
  const dataDir = str("data", o.data);
  if (dataDir === undefined) throw new UsageError(`${cmd}: --data FLORES_DIR is required (see alignx eval --help)`);
  const alignMode = o.alignReport === true;
  const langs = listOption(cmd, "langs", o.langs)?.map((l) => {
    try {
      return normalizeLang(l, "--langs", 2);
    } catch (e) {
      return asUsage(e);
    }
  });
  const maxSentences = numOption(cmd, "max-sentences", o.maxSentences, { integer: true, min: 1 }) ?? (alignMode ? DEFAULT_ALIGN_SENTENCES : undefined);
  const batchOpt = numOption(cmd, "batch-size", o.batchSize, { integer: true, min: 1, max: 4096 });
  const maxNewTokens = numOption(cmd, "max-new-tokens", o.maxNewTokens, { integer: true, min: 1, max: 1 << 20 }) ?? DEFAULT_MAX_NEW_TOKENS;
  const seed = numOption(cmd, "seed", o.seed, SEED) ?? 0;
  const tokenize = str("tokenize", o.tokenize);
  const spmModel = str("spm-model", o.spmModel);
  if (alignMode)
    for (const [k, flag] of [["directions", "directions"], ["maxNewTokens", "max-new-tokens"], ["tokenize", "tokenize"], ["spmModel", "spm-model"]] as const)
      if (o[k] !== undefined) throw new UsageError(`${cmd}: --${flag} applies to the translation evaluation, not to --align-report`);
  if (!alignMode && o.seed !== undefined) throw new UsageError(`${cmd}: --seed applies to --align-report (translation is greedy)`);
  let modes: DirectionMode[] = [];
  try {
    modes = alignMode ? [] : parseDirections(str("directions", o.directions) ?? "en-x,x-en");
  } catch (e) {
    asUsage(e);
  }
  if (tokenize !== undefined && tokenize !== "auto" && !isTokenizerName(tokenize))
    throw new UsageError(`${cmd}: --tokenize: unknown tokenizer ${JSON.stringify(tokenize)}; choose auto (default) or one of ${TOKENIZERS.join(", ")}`);
  if (spmModel !== undefined && !SPM_TOKENIZERS.has(tokenize ?? "auto"))
    throw new UsageError(`${cmd}: --spm-model applies only to --tokenize spm, flores101 or flores200 (got --tokenize ${tokenize ?? "auto"})`);
  const out = str("out", o.out) ?? `runs/eval-${stamp()}`;

  // The model directory: checked here so that each problem names its file and exits 2.
  if (!existsSync(modelDir) || !statSync(modelDir).isDirectory()) throw new UsageError(`${cmd}: --model ${modelDir}: no such directory`);
  for (const f of ["config.json", "tokenizer.json"])
    if (!existsSync(join(modelDir, f))) throw new UsageError(`${cmd}: ${join(modelDir, f)}: no such file (--model needs a checkpoint directory with config.json, its weights and tokenizer.json)`);
  const config = await readHfConfig(join(modelDir, "config.json"));
  const tok = await loadTokenizer(modelDir);
  checkTokenizerFits(tok, config.vocabSize, `${join(modelDir, "config.json")}'s vocab_size`);

  // The data and what is asked of it.
  const set: FloresSet = await loadFloresSet(dataDir, { langs: langs ?? null, require: [PIVOT], maxSentences }).catch(asUsage);
  if (set.langs.length < 2) throw new UsageError(`${cmd}: only ${set.langs.join(", ")} in ${set.dir}: the evaluation needs English and at least one other language`);
  const directions = evalDirections(set.langs, modes);
  try {
    if (!alignMode) for (const tgt of new Set(directions.map(([, t]) => t))) directionMetrics(tgt, { tokenize, spmModel }); // an unusable tokenizer fails now
  } catch (e) {
    asUsage(e);
  }
  const reportName = alignMode ? "alignment.json" : "report.json";
  if (existsSync(join(out, reportName)) && o.overwrite !== true)
    throw new UsageError(`${cmd}: ${join(out, reportName)} exists (a finished evaluation); pass --overwrite to replace it, or choose another --out`);
  if (existsSync(out) && !statSync(out).isDirectory()) throw new UsageError(`${cmd}: --out ${out} is a file, not a directory`);

  await mkdir(out, { recursive: true });
  // --overwrite: the old report must not outlive a failed rerun, nor its hypothesis files a direction not rerun.
  const finished = existsSync(join(out, reportName));
  await rm(join(out, reportName), { force: true });
  if (finished && !alignMode) for (const f of await readdir(out)) if (/^(hyp\.[^.]+-[^.]+|ref\.[^.]+)\.txt$/.test(f)) await rm(join(out, f), { force: true });
  const emptyLines = set.emptyLines ? ` (${set.emptyLines} lines left out: empty in a language)` : "";
  const gpu = cli.gpu ?? (await openCommandGpu({ adapter: cli.adapter, cpu: cli.cpu }));
  let model: LlamaModel | undefined;
  try {
    model = await LlamaModel.fromPretrained(gpu, modelDir, { requiresGrad: false });
    if (alignMode) {
      const L = config.numHiddenLayers;
      const al = config.raw.align_layer;
      const alignLayer = typeof al === "number" && Number.isInteger(al) && al >= 0 && al <= L ? al : null;
      const skip = specialPrefix(tok).length;
      const cap = config.maxPositionEmbeddings;
      const sentences = Object.fromEntries(set.langs.map((l) => [l, set.sentences[l]!.map((s) => tok.encode(s).slice(0, cap))]));
      log(`alignx eval --align-report: ${set.langs.length} languages × ${set.n} sentences of ${set.dir}${emptyLines}, ${L + 1} hidden states${alignLayer === null ? "" : `, align layer ${alignLayer}`}; output in ${out}`);
      const a = await alignmentAnalysis(model, {
        pivot: PIVOT,
        langs: set.langs,
        sentences,
        batchSize: batchOpt,
        skipPrefix: skip,
        padId: tok.padId ?? config.padTokenId ?? undefined,
        seed,
        alignLayer,
        model: modelDir,
        data: set.dir,
        split: set.split.slice(1),
      });
      await writeBytesAtomic(join(out, "alignment.svg"), alignmentSvg(a));
      await writeBytesAtomic(join(out, "alignment.json"), `${JSON.stringify(a, null, 2)}\n`);
      print(o.json === true ? JSON.stringify(a, null, 2) : `${alignmentTable(a)}\nreport: ${join(out, "alignment.json")}, ${join(out, "alignment.svg")}`);
      return 0;
    }
    const eos = [...new Set([...tok.eosIds, ...config.eosTokenIds])];
    const pad = tok.padId ?? config.padTokenId ?? undefined;
    // The longest prompt, for the default batch size: each language's longest sentence (in characters) as a source.
    const longest = Math.max(
      ...set.langs.map((l) => {
        const s = set.sentences[l]!.reduce((a, b) => (b.length > a.length ? b : a), "");
        return translationPromptIds(tok, l, l === PIVOT ? set.langs.find((x) => x !== PIVOT)! : PIVOT, s).length;
      }),
    );
    const batchSize = batchOpt ?? defaultBatchSize(config, { promptTokens: longest, maxNewTokens, budgetBytes: gpu.pool.budgetBytes, limits: gpu.limits });
    log(
      `alignx eval: ${directions.length} directions × ${set.n} sentences of ${set.dir}${emptyLines}; batch ${batchSize}, at most ${maxNewTokens} new tokens, greedy` +
        `${eos.length ? "" : " (no EOS token: every translation runs to --max-new-tokens)"}; output in ${out}`,
    );
    const report = await runTranslationEval(model, tok, {
      out,
      set,
      directions,
      batchSize,
      maxNewTokens,
      eosTokenIds: eos,
      padTokenId: pad,
      tokenize,
      spmModel,
      lid: new LanguageDetector([...ALIGNX_LANGS, ...set.langs]),
      model: modelDir,
      log,
    });
    print(o.json === true ? JSON.stringify(report, null, 2) : `${translationTable(report)}\nreport: ${join(out, "report.json")}`);
    return 0;
  } finally {
    model?.release();
    if (!cli.gpu) gpu.destroy();
  }
}

export function registerEval(cli: CAC): void {
  cli
    .command("eval", "Translation evaluation on FLORES (BLEU, chrF++, off-target rate, tokens/s per direction), or with --align-report the per-layer representation analysis")
    .usage(
      "eval --model DIR --data FLORES_DIR [--langs L1,L2,...] [--directions en-x,x-en|all] [--max-sentences N] [--out DIR] [--batch-size N] [--max-new-tokens N] [--json]\n" +
        "  alignx eval --align-report --model DIR --data FLORES_DIR [--langs ...] [--max-sentences N] [--out DIR]",
    )
    .option("--model <dir>", "Checkpoint directory (config.json, *.safetensors, tokenizer.json)")
    .option("--data <dir>", "FLORES directory of {lang}.dev or {lang}.devtest files (FLORES codes: eng, deu, cmn_Hans, ...), or FLORES-101's root (its devtest/)")
    .option("--langs <list>", "Languages besides English (default: the ten AlignX languages present)")
    .option("--directions <d>", "en-x, x-en, en-x,x-en (default) or all (every ordered pair)")
    .option("--max-sentences <n>", `The first N lines (default: all; ${DEFAULT_ALIGN_SENTENCES} with --align-report)`)
    .option("--out <dir>", "Output directory (default runs/eval-<date>-<time>)")
    .option("--batch-size <n>", "Prompts (or sentences) per forward (default 16, lowered when the memory estimate says it would not fit)")
    .option("--max-new-tokens <n>", `Most tokens per translation (default ${DEFAULT_MAX_NEW_TOKENS})`)
    .option("--tokenize <t>", "BLEU tokenizer for every direction (default auto: zh for Chinese targets, 13a otherwise, as sacreBLEU -l)")
    .option("--spm-model <file>", "SentencePiece model for --tokenize spm / flores101 / flores200 (spBLEU: sacreBLEU's FLORES model file)")
    .option("--seed <s>", "Seed of the random pairs and of the probe's split (--align-report; default 0)")
    .option("--align-report", "The representation analysis instead: retrieval, cosine, CKA and a language-ID probe per layer → OUT/alignment.json, alignment.svg")
    .option("--overwrite", "Replace a finished report in --out")
    .option("--json", "Print the report's JSON instead of the table")
    .action((o: Record<string, unknown>) => evalCli(o, { adapter: o.adapter as string | undefined, cpu: o.cpu as boolean | undefined }));
}
