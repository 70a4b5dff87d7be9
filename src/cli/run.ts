/**
 * `alignx run FILE.ts [args…]`: run a user's script with navigator.gpu and the GPU* globals installed,
 * as `deno run` does. The script sees `process.argv` as `[runtime, FILE, args…]`.
 *
 * A script (or a file it imports) that does not parse fails with FILE:LINE:COLUMN, the line and a caret, exit 1.
 * A GPU error the script does not capture (no error scope, no `preventDefault()` in an `uncapturederror`
 * handler) fails the run, exit 1, with the error's message: src/gpu/globals.ts.
 */
import { existsSync } from "node:fs";
import { isAbsolute, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { installGlobals } from "../gpu/globals.ts";
import { UsageError } from "./usage.ts";

/** A script that failed to load: exit 1. */
export class ScriptError extends Error {
  exitCode = 1;
}

/** Where Bun's parser puts the location of a syntax error (BuildMessage.position). */
interface SourcePosition {
  file: string;
  line: number;
  column: number;
  lineText?: string;
  length?: number;
}

/** A syntax error as FILE:LINE:COLUMN: message, the line and a caret; undefined for anything else. */
export function syntaxError(e: unknown): ScriptError | undefined {
  const p = (e as { position?: SourcePosition | null } | null)?.position;
  if (!p || typeof p.file !== "string" || typeof p.line !== "number" || !(e instanceof Error)) return undefined;
  const rel = relative(process.cwd(), p.file);
  const file = rel && !rel.startsWith("..") && !isAbsolute(rel) ? rel : p.file;
  const col = Math.max(1, p.column ?? 1);
  const lines = [`${file}:${p.line}:${col}: ${e.message}`];
  if (p.lineText) lines.push(`  ${p.lineText}`, `  ${" ".repeat(col - 1)}${"^".repeat(Math.max(1, p.length ?? 1))}`);
  return new ScriptError(lines.join("\n"));
}

export async function runScript(file: string, args: string[]): Promise<number> {
  const path = resolve(file);
  if (!existsSync(path)) throw new UsageError(`run: no such file: ${file}`);
  await installGlobals();
  process.argv = [process.argv[0]!, path, ...args];
  try {
    await import(pathToFileURL(path).href);
  } catch (e) {
    throw syntaxError(e) ?? e;
  }
  return 0;
}
