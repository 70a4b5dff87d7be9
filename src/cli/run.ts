/**
 * `alignx run FILE.ts [args…]`: run a user's script with navigator.gpu and the GPU* globals installed,
 * as `deno run` does. The script sees `process.argv` as `[runtime, FILE, args…]`.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { installGlobals } from "../gpu/globals.ts";
import { UsageError } from "./usage.ts";

export async function runScript(file: string, args: string[]): Promise<number> {
  const path = resolve(file);
  if (!existsSync(path)) throw new UsageError(`run: no such file: ${file}`);
  await installGlobals();
  process.argv = [process.argv[0]!, path, ...args];
  await import(pathToFileURL(path).href);
  return 0;
}
