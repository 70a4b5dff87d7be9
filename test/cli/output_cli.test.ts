// What the CLI promises about output paths (README), end to end: each test spawns `bun src/cli/main.ts …` with a
// hard timeout and checks the exit code, the message and what is (not) changed on disk. Refusals happen before
// the work (no GPU is opened, no corpus read). Every test failed on the code before src/io/output.ts.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Mounts, NO_MOUNT } from "../io/mounts.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const MAIN = join(ROOT, "src/cli/main.ts");
const LLAMA = join(ROOT, "test/fixtures/parity/llama");
const TOKENIZER = join(ROOT, "test/fixtures/tokenizers/bytelevel");
const SPAWN_TIMEOUT_MS = 90_000;
const TEST_TIMEOUT_MS = 120_000;
/** A pid that cannot be running (above Linux's largest pid_max, 2^22). */
const DEAD = 4_194_999;

const TMP = mkdtempSync(join(tmpdir(), "alignx-output-cli-"));
const mounts = new Mounts();
afterAll(() => {
  mounts.unmountAll();
  rmSync(TMP, { recursive: true, force: true });
});
const CAN_MOUNT = mounts.canMount;
if (!CAN_MOUNT) console.warn(`skipping the read-only and full filesystem CLI tests: ${NO_MOUNT}`);
let n = 0;
const fresh = () => {
  const d = join(TMP, `t${++n}`);
  mkdirSync(d);
  return d;
};

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

const alignx = (...args: string[]) => sh([process.execPath, MAIN, ...args]);

/** Run a command from the repo root; SIGKILL after SPAWN_TIMEOUT_MS so nothing can hang the suite. */
async function sh(cmd: string[]): Promise<Result> {
  const env: Record<string, string | undefined> = { ...process.env };
  delete env.ALIGNX_ADAPTER;
  delete env.ALIGNX_CPU;
  const proc = Bun.spawn({ cmd, cwd: ROOT, env, stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: SPAWN_TIMEOUT_MS, killSignal: "SIGKILL" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (proc.signalCode) throw new Error(`${cmd.join(" ")}: killed by ${proc.signalCode} (timeout ${SPAWN_TIMEOUT_MS} ms?)\n${stdout}\n${stderr}`);
  return { code, stdout, stderr };
}

/** A copy of the tiny LLaMA parity fixture (so that a command that wrongly writes an input harms only the copy). */
function model(): { dir: string; model: string; batch: string; expected: string } {
  const dir = fresh();
  const m = join(dir, "llama");
  cpSync(LLAMA, m, { recursive: true });
  return { dir, model: m, batch: join(m, "batch.json"), expected: join(m, "expected.safetensors") };
}

/** Refused up front: exit 2, one `alignx: MESSAGE` line, no summary (the work never started; pack's first line names its task). */
function expectRefused(r: Result, message: string | RegExp): void {
  expect(r.stdout).toMatch(/^(pack: task [^\n]*\n)?$/);
  if (typeof message === "string") expect(r.stderr).toBe(`alignx: ${message}\n`);
  else expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toContain(".tmp-");
  expect(r.code).toBe(2);
}

describe("alignx parity --out", () => {
  test(
    "1. the same file as --expected (or --model's weights, or a new file in --model) is refused, naming both; nothing changes",
    async () => {
      const { dir, model: m, batch, expected } = model();
      const listing = readdirSync(m).sort();
      const ref = join(dir, "ref.safetensors");
      cpSync(expected, ref);
      const before = readFileSync(ref);
      const r = await alignx("parity", "--model", m, "--batch", batch, "--out", ref, "--expected", ref);
      expectRefused(r, `parity: --out ${ref} is the same file as --expected ${ref}; refusing to overwrite an input`);
      expect(readFileSync(ref).equals(before)).toBe(true);

      const weights = join(m, "model.safetensors");
      const w = readFileSync(weights);
      const r2 = await alignx("parity", "--model", m, "--batch", batch, "--out", weights);
      expectRefused(r2, `parity: --out ${weights} is inside --model ${m}, an input directory; refusing to write into an input (choose a path outside it)`);
      expect(readFileSync(weights).equals(w)).toBe(true);
      const r3 = await alignx("parity", "--model", m, "--batch", batch, "--out", batch);
      expect(r3.code).toBe(2);
      expect(readdirSync(m).sort()).toEqual(listing); // nothing written into the model directory
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "2, 3. a device node / FIFO, a directory or a read-only (0444) file is refused and left as it was",
    async () => {
      const { dir, model: m, batch } = model();
      const node = join(dir, "node");
      const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
      const made = isRoot && spawnSync("mknod", [node, "c", "1", "3"]).status === 0 ? "a character device" : (spawnSync("mkfifo", [node]).status === 0 ? "a FIFO (named pipe)" : null);
      expect(made).not.toBeNull();
      const st = lstatSync(node);
      expectRefused(await alignx("parity", "--model", m, "--batch", batch, "--out", node), `parity: --out ${node} is ${made}; outputs are written only over regular files or new paths`);
      const after = lstatSync(node);
      expect([after.ino, after.mode, after.rdev]).toEqual([st.ino, st.mode, st.rdev]);

      expectRefused(await alignx("parity", "--model", m, "--batch", batch, "--out", dir), `parity: --out ${dir} is a directory; outputs are written only over regular files or new paths`);

      const ro = join(dir, "ro.safetensors");
      writeFileSync(ro, "keep");
      chmodSync(ro, 0o444);
      expectRefused(
        await alignx("parity", "--model", m, "--batch", batch, "--out", ro),
        `parity: --out ${ro} is read-only (mode 0444); refusing to replace it (make it writable, e.g. chmod u+w, or choose another path)`,
      );
      expect(readFileSync(ro, "utf8")).toBe("keep");
      expect(statSync(ro).mode & 0o777).toBe(0o444);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "5. a missing directory, or a file where a directory is expected, is refused before the work, naming --out",
    async () => {
      const { dir, model: m, batch } = model();
      const out = join(dir, "missing", "out.safetensors");
      expectRefused(await alignx("parity", "--model", m, "--batch", batch, "--out", out), `parity: --out ${out} cannot be written: its directory ${join(dir, "missing")} does not exist`);
      writeFileSync(join(dir, "afile"), "x");
      const under = join(dir, "afile", "out.safetensors");
      expectRefused(await alignx("parity", "--model", m, "--batch", batch, "--out", under), `parity: --out ${under} cannot be written: ${join(dir, "afile")} is a regular file, not a directory`);
    },
    TEST_TIMEOUT_MS,
  );

  // As root, permission bits do not stop a write: the command runs as nobody (setpriv) to meet EACCES.
  const CAN_DROP = process.getuid?.() === 0 && spawnSync("setpriv", ["--version"], { stdio: "ignore" }).status === 0;
  test.skipIf(!CAN_DROP)(
    "5. a directory the user may not write in (EACCES, run as nobody) is refused before the work",
    async () => {
      const { dir, model: m, batch } = model();
      chmodSync(TMP, 0o755);
      chmodSync(dir, 0o755);
      const out = join(dir, "out.safetensors");
      const r = await sh(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, MAIN, "parity", "--model", m, "--batch", batch, "--out", out]);
      expectRefused(r, `parity: --out ${out} cannot be written: permission denied in ${dir}`);
      expect(readdirSync(dir)).toEqual(["llama"]);
    },
    TEST_TIMEOUT_MS,
  );

  test.skipIf(!CAN_MOUNT)(
    "5. a read-only filesystem and a full one are refused before the work",
    async () => {
      const { model: m, batch } = model();
      const [, ro] = mounts.readOnlyBind()!;
      const out = join(ro, "out.safetensors");
      expectRefused(await alignx("parity", "--model", m, "--batch", batch, "--out", out), `parity: --out ${out} cannot be written: ${ro} is on a read-only filesystem`);
      // 16 KiB free; the gradients of the 46 KB checkpoint need more
      const full = mounts.tmpfs(16)!;
      const out2 = join(full, "out.safetensors");
      expectRefused(await alignx("parity", "--model", m, "--batch", batch, "--out", out2), new RegExp(`^alignx: parity: --out ${out2} cannot be written: no space left on the device \\(\\d+ bytes free in ${full}, at least \\d+ needed\\)\\n$`));
      expect(readdirSync(full)).toEqual([]);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "2, 3, 4. through a symlink: the target is replaced (mode 0600 kept), the link stays, a dead process's temp file goes",
    async () => {
      const { dir, model: m, batch, expected } = model();
      const real = join(dir, "real.safetensors");
      writeFileSync(real, "old");
      chmodSync(real, 0o600);
      const link = join(dir, "out.safetensors");
      symlinkSync("real.safetensors", link);
      const stale = join(dir, `.real.safetensors.tmp-${DEAD}-1`);
      writeFileSync(stale, "half a file");
      const r = await alignx("parity", "--model", m, "--batch", batch, "--out", link, "--expected", expected);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`-> ${link}`);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      expect(readlinkSync(link)).toBe("real.safetensors");
      expect(statSync(real).size).toBeGreaterThan(10_000);
      expect(statSync(real).mode & 0o777).toBe(0o600);
      expect(existsSync(stale)).toBe(false);
      expect(readdirSync(dir).sort()).toEqual(["llama", "out.safetensors", "real.safetensors"]);
    },
    TEST_TIMEOUT_MS,
  );
});

describe("alignx pack --out DIR", () => {
  const tsvText = Array.from({ length: 3 }, (_, i) => `Der Fuchs Nummer ${i}.\tThe fox number ${i}.\n`).join("");
  /** A scratch dir with an input and a finished pack output `out` (made once, copied). */
  let made: string | null = null;
  async function packed(): Promise<{ dir: string; tsv: string; out: string }> {
    const dir = fresh();
    const tsv = join(dir, "deu-eng.tsv");
    writeFileSync(tsv, tsvText);
    const out = join(dir, "out");
    if (made === null) {
      const r = await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, "--workers", "0", tsv);
      expect(r.code).toBe(0);
      made = out;
    } else cpSync(made, out, { recursive: true });
    return { dir, tsv, out };
  }
  const seed = (out: string) => (JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")) as { seed?: number }).seed;

  test(
    "1. inside the tokenizer's directory, or holding an input (even with --overwrite), is refused; nothing changes",
    async () => {
      const { dir, out } = await packed();
      const tok = join(dir, "tok");
      cpSync(TOKENIZER, tok, { recursive: true });
      const inTok = join(tok, "packed");
      expectRefused(
        await alignx("pack", "--tokenizer", tok, "--out", inTok, "--workers", "0", join(dir, "deu-eng.tsv")),
        `pack: --out ${inTok} is inside --tokenizer ${tok}, an input directory; refusing to write into an input (choose a path outside it)`,
      );
      expect(existsSync(inTok)).toBe(false);
      // an input kept inside an old pack output: --overwrite would delete it
      const kept = join(out, "deu-eng.tsv");
      writeFileSync(kept, tsvText);
      expectRefused(
        await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, "--overwrite", "--workers", "0", kept),
        `pack: --out ${out} holds input ${kept}, an input; replacing it would delete the input`,
      );
      expect(readFileSync(kept, "utf8")).toBe(tsvText);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "2, 3. a symlink to a pack output is followed with --overwrite (the link stays); a read-only one is refused",
    async () => {
      const { dir, tsv, out } = await packed();
      const link = join(dir, "latest");
      symlinkSync("out", link);
      const r = await alignx("pack", "--tokenizer", TOKENIZER, "--out", link, "--overwrite", "--seed", "3", "--workers", "0", tsv);
      expect(r.stderr).not.toContain("alignx:");
      expect(r.code).toBe(0);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      expect(seed(out)).toBe(3);
      expect(readdirSync(dir).sort()).toEqual(["deu-eng.tsv", "latest", "out"]);

      chmodSync(out, 0o555);
      expectRefused(
        await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, "--overwrite", "--seed", "4", "--workers", "0", tsv),
        `pack: --out ${out} is read-only (mode 0555); refusing to replace it (make it writable, e.g. chmod u+w, or choose another path)`,
      );
      expect(seed(out)).toBe(3);
      chmodSync(out, 0o755);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "5. a file where a directory is expected is refused up front naming --out (not ENOTDIR on a temp directory)",
    async () => {
      const dir = fresh();
      const tsv = join(dir, "deu-eng.tsv");
      writeFileSync(tsv, tsvText);
      writeFileSync(join(dir, "afile"), "x");
      const out = join(dir, "afile", "sub", "out");
      expectRefused(await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, "--workers", "0", tsv), `pack: --out ${out} cannot be created: ${join(dir, "afile")} is a regular file, not a directory`);
      expect(readdirSync(dir).sort()).toEqual(["afile", "deu-eng.tsv"]);
    },
    TEST_TIMEOUT_MS,
  );

  test.skipIf(!CAN_MOUNT)(
    "5. a read-only filesystem is refused up front",
    async () => {
      const dir = fresh();
      const tsv = join(dir, "deu-eng.tsv");
      writeFileSync(tsv, tsvText);
      const [, ro] = mounts.readOnlyBind()!;
      const out = join(ro, "out");
      expectRefused(await alignx("pack", "--tokenizer", TOKENIZER, "--out", out, "--workers", "0", tsv), `pack: --out ${out} cannot be written: ${ro} is on a read-only filesystem`);
    },
    TEST_TIMEOUT_MS,
  );
});

describe("alignx bench --out DIR", () => {
  test(
    "5. a results folder that is a file is refused before the suite runs (was: after it, as EEXIST)",
    async () => {
      const dir = fresh();
      const f = join(dir, "results");
      writeFileSync(f, "not a folder");
      const r = await alignx("bench", "--quick", "--no-train", "--no-peers", "--no-data", "--only", "^none$", "--out", f);
      expect(r.stderr).toBe(`alignx: bench: --out ${f} exists and is not a directory; refusing to replace it (it is a regular file)\n`);
      expect(r.stdout).toBe("");
      expect(r.code).toBe(2);
      expect(readFileSync(f, "utf8")).toBe("not a folder");
    },
    TEST_TIMEOUT_MS,
  );
});
