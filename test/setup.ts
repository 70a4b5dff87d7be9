// Preloaded before every test file (bunfig.toml [test] preload, and the `test` script's --preload): tests never
// read or write the user's autotune cache (~/.cache/alignx), subprocesses included. Kernel choices under
// "auto" are the built-in defaults unless a test tunes, and then into this run's own directory. And the run's
// scratch root: test/helpers.ts `tempDir` makes every test's temp directory under it, removed after the run.
import { afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

if (!process.env.ALIGNX_TEST_CACHE) {
  const dir = mkdtempSync(join(tmpdir(), "alignx-test-cache-"));
  process.env.ALIGNX_TEST_CACHE = dir;
  process.env.ALIGNX_CACHE_DIR = dir;
  afterAll(() => rmSync(dir, { recursive: true, force: true })); // in a preload: once, after every file
}

if (!process.env.ALIGNX_TEST_TMP) {
  const root = mkdtempSync(join(tmpdir(), "alignx-test-tmp-"));
  process.env.ALIGNX_TEST_TMP = root;
  afterAll(() => rmSync(root, { recursive: true, force: true })); // bun test fires no process "exit" event
}
