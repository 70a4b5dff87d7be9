// The model and data the `alignx eval` tests run on, built in a temp directory in about a second: a byte-level
// BPE of 512 tokens trained on the UDHR (eng, deu, fra), a tiny random LLaMA for it saved with the tokenizer
// (config.json names an align_layer), and a FLORES-like directory of 5 line-aligned sentences in eng, deu, fra.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { saveTrainedBpe, trainBpe } from "../../src/data/bpe_train.ts";
import { openUdhr } from "../../src/data/formats/udhr.ts";
import type { Gpu } from "../../src/gpu/index.ts";
import { LlamaModel } from "../../src/nn/index.ts";
import { TINY_CONFIG } from "../align/train_fixture.ts";

/** The fixture's model: TINY_CONFIG (2 layers, hidden 32, vocabulary 512) with decisive random logits and an align layer. */
export const EVAL_CONFIG = { ...TINY_CONFIG, initializer_range: 0.2, align_layer: 1 };

/** Five sentences per language, line-aligned (line i is the same sentence). */
export const TINY_FLORES: Record<string, string[]> = {
  eng: [
    "Everyone has the right to life, liberty and security of person.",
    "All human beings are born free and equal in dignity and rights.",
    "No one shall be held in slavery or servitude; slavery and the slave trade shall be prohibited in all their forms.",
    "Everyone has the right to freedom of movement.",
    "Everyone has the right to education.",
  ],
  deu: [
    "Jeder hat das Recht auf Leben, Freiheit und Sicherheit der Person.",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
    "Niemand darf in Sklaverei oder Leibeigenschaft gehalten werden; Sklaverei und Sklavenhandel in allen ihren Formen sind verboten.",
    "Jeder hat das Recht auf Freizügigkeit.",
    "Jeder hat das Recht auf Bildung.",
  ],
  fra: [
    "Tout individu a droit à la vie, à la liberté et à la sûreté de sa personne.",
    "Tous les êtres humains naissent libres et égaux en dignité et en droits.",
    "Nul ne sera tenu en esclavage ni en servitude; l'esclavage et la traite des esclaves sont interdits sous toutes leurs formes.",
    "Toute personne a le droit de circuler librement.",
    "Toute personne a droit à l'éducation.",
  ],
};

export interface EvalFixture {
  root: string;
  /** The tiny model with tokenizer.json (HF layout). */
  model: string;
  /** A model directory without tokenizer.json. */
  noTokenizer: string;
  /** The FLORES-like directory: eng.devtest, deu.devtest, fra.devtest. */
  flores: string;
  /** A new, not yet existing path under the root. */
  path(name: string): string;
  cleanup(): void;
}

export async function buildEvalFixture(gpu: Gpu): Promise<EvalFixture> {
  const root = mkdtempSync(join(tmpdir(), "alignx-eval-test-"));
  const texts: string[] = [];
  for await (const it of (await openUdhr("udhr:eng,deu,fra")).read()) if (it.kind === "parallel") texts.push(...Object.values(it.texts));
  const trained = trainBpe(texts, { vocabSize: 512 });
  const tokDir = join(root, "tokenizer");
  await saveTrainedBpe(tokDir, trained);
  const files: Record<string, Uint8Array> = {};
  for (const name of ["tokenizer.json", "tokenizer_config.json"]) files[name] = new Uint8Array(await Bun.file(join(tokDir, name)).arrayBuffer());
  const model = join(root, "model");
  const noTokenizer = join(root, "no-tokenizer");
  {
    using m = LlamaModel.fromConfig(gpu, EVAL_CONFIG, { seed: 7 });
    await m.save(model, { dtype: "F32", files });
    await m.save(noTokenizer, { dtype: "F32" });
  }
  const flores = join(root, "flores");
  mkdirSync(flores);
  for (const [lang, lines] of Object.entries(TINY_FLORES)) writeFileSync(join(flores, `${lang}.devtest`), `${lines.join("\n")}\n`);
  let n = 0;
  return {
    root,
    model,
    noTokenizer,
    flores,
    path: (name) => join(root, "runs", `${String(n++).padStart(2, "0")}-${name}`),
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}
