// Shared by the data tests: fixture paths, the FLORES-101 lines in ../shared when they exist, and a Python
// with the Rust `tokenizers` library when one is around.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { tempDir } from "../helpers.ts";

export const FIXTURES = join(import.meta.dir, "..", "fixtures", "tokenizers");
export const UDHR_LINES: string[] = readFileSync(join(FIXTURES, "udhr.txt"), "utf8").split("\n").filter((l) => l.length > 0);

export const FLORES_DIR = join(import.meta.dir, "..", "..", "..", "shared", "data", "flores101", "dev");
export const FLORES_LANGS = ["eng", "deu", "tha", "jpn", "cmn_Hans", "ben", "swh", "rus", "fra", "spa"] as const;

/** FLORES-101 dev lines per language, or null (with a message, once) when ../shared/data is absent. */
let floresWarned = false;
export function floresLines(): Map<string, string[]> | null {
  const missing = FLORES_LANGS.filter((l) => !existsSync(join(FLORES_DIR, `${l}.dev`)));
  if (missing.length > 0) {
    if (!floresWarned) console.warn(`skipping FLORES tests: ${FLORES_DIR}/{${missing.join(",")}}.dev not found (../shared/data is not in this clone)`);
    floresWarned = true;
    return null;
  }
  const out = new Map<string, string[]>();
  for (const l of FLORES_LANGS) out.set(l, readFileSync(join(FLORES_DIR, `${l}.dev`), "utf8").split("\n").filter((s) => s.length > 0));
  return out;
}

/** About `bytes` bytes of FLORES text, the languages interleaved line by line. */
export function floresSample(flores: Map<string, string[]>, bytes: number): string[] {
  const per = [...flores.values()];
  const out: string[] = [];
  let n = 0;
  for (let i = 0; ; i++) {
    let any = false;
    for (const lines of per) {
      if (i >= lines.length) continue;
      any = true;
      out.push(lines[i]);
      n += Buffer.byteLength(lines[i]);
      if (n >= bytes) return out;
    }
    if (!any) return out;
  }
}

export interface Goldens {
  tokenizers_version: string;
  texts: string[];
  tokenizers: Record<string, { vocabSize: number; cases: { ids: number[]; idsNoSpecial: number[]; tokens: string[]; decoded: string; decodedSkip: string; decodedHalf: string }[] }>;
}
export const GOLDENS: Goldens = JSON.parse(readFileSync(join(FIXTURES, "goldens.json"), "utf8"));

/**
 * A python with `tokenizers` importable: $TOKENIZERS_PYTHON, else /usr/bin/python3; null (with a message)
 * when neither has it.
 */
let pythonChecked: string | null | undefined;
export function tokenizersPython(): string | null {
  if (pythonChecked !== undefined) return pythonChecked;
  pythonChecked = null;
  for (const py of [process.env.TOKENIZERS_PYTHON, "/usr/bin/python3"]) {
    if (!py || !existsSync(py)) continue;
    const r = Bun.spawnSync([py, "-c", "import tokenizers"], { stdout: "ignore", stderr: "ignore" });
    if (r.exitCode === 0) {
      pythonChecked = py;
      break;
    }
  }
  if (pythonChecked === null) console.warn("skipping live comparisons with the Rust tokenizers library: no python with `tokenizers` (set TOKENIZERS_PYTHON)");
  return pythonChecked;
}

/** Encode `texts` with the Rust library (add_special_tokens true) through `python`. */
export function rustEncode(python: string, tokenizerJsonPath: string, texts: string[]): number[][] {
  const dir = tempDir("alignx-tok-");
  const input = join(dir, "texts.json"), output = join(dir, "ids.json");
  writeFileSync(input, JSON.stringify(texts));
  const script = [
    "import json, sys",
    "from tokenizers import Tokenizer",
    "tok = Tokenizer.from_file(sys.argv[1])",
    "texts = json.load(open(sys.argv[2], encoding='utf-8'))",
    "json.dump([e.ids for e in tok.encode_batch(texts, add_special_tokens=True)], open(sys.argv[3], 'w'))",
  ].join("\n");
  const r = Bun.spawnSync([python, "-c", script, tokenizerJsonPath, input, output], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`python tokenizers failed: ${r.stderr.toString()}`);
  return JSON.parse(readFileSync(output, "utf8"));
}

/**
 * A temp directory for one test file, removed after it, and `scratch()`: a fresh subdirectory of it with `w(name,
 * content)`, which writes a file there (creating its folders) and returns its path.
 */
export function scratchDirs(prefix: string): { root: string; scratch: () => { dir: string; w: (name: string, content: string | Uint8Array) => string } } {
  const root = tempDir(prefix);
  let n = 0;
  const scratch = () => {
    const dir = join(root, `s${n++}`);
    mkdirSync(dir);
    const w = (name: string, content: string | Uint8Array) => {
      const p = join(dir, name);
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p, content);
      return p;
    };
    return { dir, w };
  };
  return { root, scratch };
}
