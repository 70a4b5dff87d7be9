/**
 * What every command shares for its options: UsageError (exit 2, the message names the flag) and the parsers
 * of numeric and list options, so that `--cutoff abc`, `--workers -1` or `--langs ""` read the same everywhere.
 */
export class UsageError extends Error {
  exitCode = 2;
}

/** A numeric option: undefined stays undefined; else a finite number (an integer when `integer`) in [min, max]. */
export function numOption(cmd: string, flag: string, v: unknown, o: { integer?: boolean; min?: number; max?: number } = {}): number | undefined {
  if (v === undefined) return undefined;
  const x = typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : Number.NaN;
  const kind = o.integer ? "an integer" : "a number";
  if (!Number.isFinite(x) || (o.integer && !Number.isInteger(x))) throw new UsageError(`${cmd}: --${flag} must be ${kind}, got ${JSON.stringify(v)}`);
  if ((o.min !== undefined && x < o.min) || (o.max !== undefined && x > o.max))
    throw new UsageError(`${cmd}: --${flag} must be ${kind} in [${o.min ?? "-inf"}, ${o.max ?? "inf"}], got ${x}`);
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
