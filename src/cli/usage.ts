/**
 * What every command shares for its options: the command-line parse (`parseArgs`: values as typed, negative
 * numbers as values, `--opt=` never swallowing the next word), UsageError (exit 2, the message names the flag)
 * and the parsers of numeric, list and adapter options, so that `--cutoff abc`, `--workers -1`, `--seed 1e20`
 * or `--langs ""` read the same everywhere.
 */
import type { CAC, Command } from "cac";

export class UsageError extends Error {
  exitCode = 2;
}

/** Bounds of a numeric option. `minOpen`: the lower bound itself is excluded (`(0, 1]`). */
export interface NumRange {
  integer?: boolean;
  min?: number;
  max?: number;
  minOpen?: boolean;
}

/** Seeds, for every command that takes one (`--seed`): the u32 the host PRNG is seeded with. */
export const SEED: NumRange = { integer: true, min: 0, max: 2 ** 32 - 1 };

/** `[0, 256]`, `(0, 1]`, `>= 8`: how messages write a range (an integer's implicit bound, 2^53, only when passed). */
function rangeText(o: NumRange, tooBig: boolean): string {
  if (o.min !== undefined && o.max !== undefined) return `in ${o.minOpen ? "(" : "["}${o.min}, ${o.max}]`;
  const lo = o.min === undefined ? "" : `${o.minOpen ? ">" : ">="} ${o.min}`;
  const hi = o.max !== undefined ? `<= ${o.max}` : tooBig ? (o.min === undefined ? "of magnitude below 2^53" : "below 2^53") : "";
  return [lo, hi].filter(Boolean).join(" and ");
}

/**
 * A numeric option: undefined stays undefined; else a finite number (a safe integer when `integer`) in the
 * range, or a UsageError naming the command, the flag, the range and the value as given.
 */
export function numOption(cmd: string, flag: string, v: unknown, o: NumRange = {}): number | undefined {
  if (v === undefined) return undefined;
  const x = typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : Number.NaN;
  const integer = o.integer === true;
  const kind = integer ? "an integer" : "a number";
  if (!Number.isFinite(x) || (integer && !Number.isInteger(x))) throw new UsageError(`${cmd}: --${flag} must be ${kind}, got ${JSON.stringify(v)}`);
  const low = o.min !== undefined && (o.minOpen ? x <= o.min : x < o.min);
  const high = (o.max !== undefined && x > o.max) || (integer && !Number.isSafeInteger(x));
  if (low || high) throw new UsageError(`${cmd}: --${flag} must be ${kind} ${rangeText(o, high && o.max === undefined)}, got ${typeof v === "string" ? v.trim() : x}`);
  return x;
}

/** A comma-separated list option (`--langs deu,eng`): undefined stays undefined; empty items are refused. */
export function listOption(cmd: string, flag: string, v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  const items = String(v).split(",").map((s) => s.trim());
  if (items.some((s) => s === "")) throw new UsageError(`${cmd}: --${flag} must be a comma-separated list without empty items, got ${JSON.stringify(String(v))}`);
  return items;
}

/** A string option that must be given (and not be empty). */
export function requiredOption(cmd: string, flag: string, v: unknown): string {
  if (v === undefined || v === true || String(v) === "") throw new UsageError(`${cmd}: --${flag} is required (see alignx ${cmd} --help)`);
  return String(v);
}

/**
 * The global `--adapter NAME|INDEX`, the one rule for every command and for `run`/`bench`: undefined stays
 * undefined (ALIGNX_ADAPTER or the default then apply); an empty value is a usage error.
 */
export function adapterOption(v: unknown, where = ""): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v.trim() === "")
    throw new UsageError(`${where}--adapter needs a value: a substring of the adapter's description, or its index in alignx info`);
  return v;
}

/** cac's spelling of an option name (`max-new-tokens` → `maxNewTokens`), the keys of its parsed options. */
function camelName(name: string): string {
  return name
    .split(".")
    .map((v, i) => (i === 0 ? v.replaceAll(/([a-z])-([a-z])/g, (_, a: string, b: string) => a + b.toUpperCase()) : v))
    .join(".");
}

/**
 * Parse `argv` (the words after the program) with `cli`, as cac would but with these rules for options that take
 * a value, so that every command gets them:
 *   - the word after `--opt` is its value even when it starts with a single `-` (`--temperature -1`,
 *     `--prompt -x`), as getopt does; a word starting with `--` is the next option (cac then says the value is
 *     missing);
 *   - `--opt=` is the empty value (cac's parser would take the next word instead), the same as `--opt ""`;
 *   - values reach the command as typed (cac's parser turns numeric-looking words into numbers, so
 *     `--adapter ""` became 0 and `--prompt 007` became 7);
 *   - an option given twice is a usage error, unless it is declared repeatable with cac's `{ type: [String] }`
 *     (`--ref A --ref B`): then its value is the array of the values as typed, in order.
 * Boolean flags spelled in kebab case (`--skip-bad-records`) are passed camelCased, else cac's parser would take the
 * word after them as their value. Everything after a bare `--` is left alone.
 */
export function parseArgs(cli: CAC, argv: string[]): ReturnType<CAC["parse"]> {
  const all = (c?: Command) => [...cli.globalCommand.options, ...(c ? c.options : cli.commands.flatMap((x) => x.options))];
  const booleans = new Set(all().filter((o) => o.isBoolean && !o.negated).flatMap((o) => o.names));
  const out: string[] = [];
  const values = new Map<string, string | string[]>();
  const words: string[] = []; // positional words as typed (cac turns "007" into 7)
  let command: Command | undefined;
  let sawCommand = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      out.push(...argv.slice(i));
      break;
    }
    const m = /^--([^=]+)(?:=([\s\S]*))?$/.exec(a);
    if (!m) {
      if (!a.startsWith("-") && !sawCommand) {
        sawCommand = true;
        command = cli.commands.find((c) => c.isMatched(a));
        if (!command) words.push(a);
      } else if (!a.startsWith("-")) words.push(a);
      out.push(a);
      continue;
    }
    const name = camelName(m[1]!);
    const takesValue = all(command).some((o) => !o.isBoolean && o.names.includes(name));
    if (!takesValue) {
      out.push(m[2] === undefined && /^[a-z0-9]+(-[a-z0-9]+)+$/.test(m[1]!) && booleans.has(name) ? `--${name}` : a);
      continue;
    }
    let v = m[2];
    if (v === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith("--")) {
        out.push(a); // no value: cac says so
        continue;
      }
      v = next;
      i++;
    }
    const repeatable = all(command).some((o) => o.names.includes(name) && Array.isArray(o.config.type));
    if (repeatable) {
      const prev = values.get(name);
      values.set(name, Array.isArray(prev) ? [...prev, v] : [v]);
    } else {
      if (values.has(name)) throw new UsageError(`--${m[1]} is given more than once`);
      values.set(name, v);
    }
    // cac sees a value (perhaps turned into a number); the typed one replaces it below.
    if (v === "") out.push(`--${m[1]}`, "");
    else out.push(`--${m[1]}=${v}`);
  }
  const parsed = cli.parse(["", "", ...out], { run: false });
  for (const [k, v] of values) cli.options[k] = v;
  // Positional words stay strings: a file named 007 is "007", not 7.
  if (cli.args.length === words.length) cli.args = words;
  return parsed;
}
