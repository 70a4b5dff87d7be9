// Output paths (src/io/output.ts, and the atomic writers that apply its rules): never an input; only over a
// regular file (a directory) or a new path, symbolic links followed and kept; read-only refused, modes kept;
// stale temp files of dead processes removed, none left on any error path or on SIGINT/SIGTERM; location
// problems found before the work, naming the user's path. Each test failed on the code before these rules.
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { saveDirAtomic, writeBytesAtomic, writeFileAtomic } from "../../src/io/atomic.ts";
import { OutputPathError, prepareOutput, removeStaleTemps, resolveOutputTarget } from "../../src/io/output.ts";
import { Mounts, NO_MOUNT } from "./mounts.ts";

const TMP = mkdtempSync(join(tmpdir(), "alignx-io-output-"));
const mounts = new Mounts();
afterAll(() => {
  mounts.unmountAll();
  rmSync(TMP, { recursive: true, force: true });
});
let n = 0;
/** A fresh empty directory. */
const fresh = () => {
  const d = join(TMP, `t${++n}`);
  mkdirSync(d);
  return d;
};
/** A pid that cannot be running (above Linux's largest pid_max, 2^22). */
const DEAD = 4_194_999;
const temps = (dir: string) => readdirSync(dir).filter((f) => /\.tmp-\d+/.test(f));
const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

/** Await `p`; return the OutputPathError it rejects with (anything else fails the test). */
async function refused(p: Promise<unknown>): Promise<OutputPathError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof OutputPathError) return e;
    throw new Error(`expected an OutputPathError, got ${e}`);
  }
  throw new Error("expected an OutputPathError, got success");
}

/** Run a command; true when it exited 0. */
const ok = (cmd: string, ...args: string[]) => spawnSync(cmd, args, { stdio: "ignore" }).status === 0;

const CAN_MOUNT = mounts.canMount;
if (!CAN_MOUNT) console.warn(`skipping the ENOSPC and read-only-filesystem tests: ${NO_MOUNT}`);
const tmpfs = (kib: number) => mounts.tmpfs(kib);
const readOnlyBind = () => mounts.readOnlyBind();

describe("1. an output is never an input", () => {
  const inputs = (...paths: [string, string][]) => paths.map(([label, path]) => ({ label, path }));

  test("the same file (as named, through a symlink, through .., or a hard link) is refused naming both", async () => {
    const d = fresh();
    const ref = join(d, "ref.safetensors");
    writeFileSync(ref, "reference");
    symlinkSync(ref, join(d, "alias"));
    linkSync(ref, join(d, "hard"));
    mkdirSync(join(d, "sub"));
    for (const out of [ref, join(d, "alias"), join(d, "sub", "..", "ref.safetensors"), join(d, "hard")]) {
      const e = await refused(prepareOutput(out, { kind: "file", label: "parity: --out", inputs: inputs(["--expected", ref]) }));
      expect(e.exitCode).toBe(2);
      expect(e.message).toBe(`parity: --out ${out} is the same file as --expected ${ref}; refusing to overwrite an input`);
    }
    expect(readFileSync(ref, "utf8")).toBe("reference");
  });

  test("a file inside an input directory (its weights, a new file, a hard link of one elsewhere) is refused", async () => {
    const d = fresh();
    const model = join(d, "model");
    mkdirSync(model);
    writeFileSync(join(model, "model.safetensors"), "weights");
    const opts = { kind: "file" as const, label: "parity: --out", inputs: inputs(["--model", model]) };
    for (const out of [join(model, "model.safetensors"), join(model, "new.safetensors")]) {
      const e = await refused(prepareOutput(out, opts));
      expect(e.message).toBe(`parity: --out ${out} is inside --model ${model}, an input directory; refusing to write into an input (choose a path outside it)`);
    }
    const elsewhere = join(d, "elsewhere.safetensors");
    linkSync(join(model, "model.safetensors"), elsewhere);
    const e = await refused(prepareOutput(elsewhere, opts));
    expect(e.message).toContain(`is the same file as ${join(model, "model.safetensors")}, in --model ${model}`);
    // Beside the input directory is fine.
    expect((await prepareOutput(join(d, "out.safetensors"), opts)).existing).toBeNull();
    expect(readFileSync(join(model, "model.safetensors"), "utf8")).toBe("weights");
  });

  test("a directory output: equal to an input, inside an input directory, or holding an input is refused", async () => {
    const d = fresh();
    const corpus = join(d, "corpus");
    mkdirSync(corpus);
    writeFileSync(join(corpus, "deu-eng.tsv"), "a\tb\n");
    const o = (out: string) => prepareOutput(out, { kind: "dir", label: "alignx pack: --out", inputs: inputs(["input", corpus]) });
    expect((await refused(o(corpus))).message).toContain("is the same directory as input");
    expect((await refused(o(join(corpus, "packed")))).message).toContain(`is inside input ${corpus}, an input directory`);
    const e = await refused(prepareOutput(d, { kind: "dir", label: "alignx pack: --out", inputs: inputs(["input", join(corpus, "deu-eng.tsv")]) }));
    expect(e.message).toBe(`alignx pack: --out ${d} holds input ${join(corpus, "deu-eng.tsv")}, an input; replacing it would delete the input`);
  });

  test("missing inputs are left to their readers", async () => {
    const d = fresh();
    const t = await prepareOutput(join(d, "out"), { kind: "file", inputs: [{ path: join(d, "nope.json") }, { path: "udhr" }] });
    expect(t.target).toBe(join(d, "out"));
  });
});

describe("2. only regular files (directories) or new paths; symbolic links followed, never replaced", () => {
  test("writeFileAtomic through a symlink replaces its target and keeps the link", async () => {
    const d = fresh();
    const target = join(d, "real.bin");
    writeFileSync(target, "old");
    const link = join(d, "link.bin");
    symlinkSync("real.bin", link);
    await writeBytesAtomic(link, "new");
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe("real.bin");
    expect(readFileSync(target, "utf8")).toBe("new");
    expect(temps(d)).toEqual([]);
    // A dangling link is refused: no file is created through it, and the link stays.
    const dangling = join(d, "dangling");
    symlinkSync(join(d, "nowhere", "x"), dangling);
    const e = await refused(writeBytesAtomic(dangling, "x"));
    expect(e.message).toContain(`${dangling} is a symbolic link to ${join(d, "nowhere", "x")}, which does not exist`);
    expect(lstatSync(dangling).isSymbolicLink()).toBe(true);
  });

  test("a device node, a FIFO, a socket or a directory is refused before anything is written", async () => {
    const d = fresh();
    const specials: [string, string][] = [];
    if (isRoot && ok("mknod", join(d, "null"), "c", "1", "3")) specials.push([join(d, "null"), "a character device"]);
    if (ok("mkfifo", join(d, "fifo"))) specials.push([join(d, "fifo"), "a FIFO (named pipe)"]);
    if (ok("python3", "-c", `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(join(d, "sock"))})`)) specials.push([join(d, "sock"), "a socket"]);
    mkdirSync(join(d, "dir"));
    specials.push([join(d, "dir"), "a directory"]);
    expect(specials.length).toBeGreaterThanOrEqual(2);
    for (const [p, kind] of specials) {
      const before = lstatSync(p);
      let filled = false;
      const e = await refused(writeFileAtomic(p, async () => void (filled = true)));
      expect(e.exitCode).toBe(2);
      expect(e.message).toBe(`${p} is ${kind}; outputs are written only over regular files or new paths`);
      expect(filled).toBe(false);
      const after = lstatSync(p);
      expect([after.ino, after.mode, after.rdev]).toEqual([before.ino, before.mode, before.rdev]);
      // the same up front, with the command's label
      expect((await refused(prepareOutput(p, { kind: "file", label: "parity: --out" }))).message).toStartWith(`parity: --out ${p} is ${kind}`);
    }
    expect(temps(d)).toEqual([]);
  });

  test("saveDirAtomic through a symlink to a directory replaces the directory and keeps the link", async () => {
    const d = fresh();
    const real = join(d, "run-1");
    await saveDirAtomic(real, async (tmp) => writeFileSync(join(tmp, "a"), "1"));
    const link = join(d, "latest");
    symlinkSync("run-1", link);
    await saveDirAtomic(link, async (tmp) => writeFileSync(join(tmp, "b"), "2"));
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readdirSync(real)).toEqual(["b"]);
    expect(readdirSync(d).sort()).toEqual(["latest", "run-1"]);
  });
});

describe("3. a read-only output is refused; a writable one keeps its mode", () => {
  test("0444 is refused (root included) and left as it was", async () => {
    const d = fresh();
    const f = join(d, "ro.safetensors");
    writeFileSync(f, "keep");
    chmodSync(f, 0o444);
    const e = await refused(writeBytesAtomic(f, "new"));
    expect(e.exitCode).toBe(2);
    expect(e.message).toBe(`${f} is read-only (mode 0444); refusing to replace it (make it writable, e.g. chmod u+w, or choose another path)`);
    expect(readFileSync(f, "utf8")).toBe("keep");
    expect(statSync(f).mode & 0o777).toBe(0o444);
    expect((await refused(prepareOutput(f, { kind: "file", label: "parity: --out" }))).message).toStartWith(`parity: --out ${f} is read-only (mode 0444)`);
    // a read-only directory, for a directory output
    const rd = join(d, "rodir");
    mkdirSync(rd);
    chmodSync(rd, 0o555);
    expect((await refused(saveDirAtomic(rd, async () => {}))).message).toContain("is read-only (mode 0555)");
    expect(existsSync(rd)).toBe(true);
  });

  test("a replaced 0600 file stays 0600; a replaced directory keeps its mode", async () => {
    const d = fresh();
    const f = join(d, "secret.bin");
    writeFileSync(f, "old");
    chmodSync(f, 0o600);
    await writeBytesAtomic(f, "new");
    expect(readFileSync(f, "utf8")).toBe("new");
    expect(statSync(f).mode & 0o777).toBe(0o600);
    const dir = join(d, "ck");
    await saveDirAtomic(dir, async () => {});
    chmodSync(dir, 0o700);
    await saveDirAtomic(dir, async (tmp) => writeFileSync(join(tmp, "x"), "1"));
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });
});

describe("4. temp files: stale ones removed by the next write, none left on any error path", () => {
  test("a dead process's .NAME.tmp-PID-N is removed; a live one's, another name's and non-files are kept", async () => {
    const d = fresh();
    const f = join(d, "out.safetensors");
    const stale = [join(d, `.out.safetensors.tmp-${DEAD}-1`), join(d, `.out.safetensors.tmp-${DEAD}-17`)];
    for (const s of stale) writeFileSync(s, "half");
    const live = join(d, `.out.safetensors.tmp-${process.ppid}-3`);
    const other = join(d, `.other.tmp-${DEAD}-1`);
    writeFileSync(live, "in use");
    writeFileSync(other, "not ours");
    await writeBytesAtomic(f, "x");
    expect(stale.some((s) => existsSync(s))).toBe(false);
    expect(existsSync(live) && existsSync(other)).toBe(true);
    expect(readdirSync(d).sort()).toEqual([`.other.tmp-${DEAD}-1`, `.out.safetensors.tmp-${process.ppid}-3`, "out.safetensors"]);
    // prepareOutput cleans them too, before the work
    writeFileSync(stale[0]!, "half");
    expect(await removeStaleTemps(f)).toEqual([stale[0]!]);
  });

  test("errors while writing (the writer's, a rename that fails) leave no temp file and name the user's path", async () => {
    const d = fresh();
    const f = join(d, "f.bin");
    await writeBytesAtomic(f, "old");
    await expect(writeFileAtomic(f, async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    // A directory appears at the path while the file is written: the rename fails, naming the path.
    const g = join(d, "g.bin");
    const e = await refused(
      writeFileAtomic(g, async (fh) => {
        await fh.write("x");
        mkdirSync(g);
        writeFileSync(join(g, "keep"), "k");
      }),
    );
    expect(e.exitCode).toBe(1);
    expect(e.message).toStartWith(`${g} cannot be written: `);
    expect(e.message).not.toContain(".tmp-");
    expect(readFileSync(f, "utf8")).toBe("old");
    expect(temps(d)).toEqual([]);
  });

  for (const sig of ["SIGTERM", "SIGINT"] as const)
    test(`${sig} during a write removes the temp file (and a directory save's temp directory)`, async () => {
      const d = fresh();
      const script = join(d, "slow.ts");
      writeFileSync(
        script,
        `import { saveDirAtomic, writeFileAtomic } from ${JSON.stringify(resolve(import.meta.dir, "../../src/io/atomic.ts"))};
setInterval(() => {}, 1000);
// The hung writers stay reachable: a never-settling promise that nothing holds is garbage, and Bun's collector
// would then close the abandoned FileHandle and throw ("closed during garbage collection"), ending this child early.
const held: unknown[] = [];
const hang = (keep?: unknown) => { const p = new Promise<void>(() => console.log("writing")); held.push(p, keep); return p; };
held.push(writeFileAtomic(${JSON.stringify(join(d, "out.bin"))}, async (fh) => { await fh.write("partial"); await hang(fh); }));
held.push(saveDirAtomic(${JSON.stringify(join(d, "ck"))}, async () => hang()));
`,
      );
      const proc = Bun.spawn({ cmd: [process.execPath, script], stdout: "pipe", stderr: "pipe", timeout: 30_000, killSignal: "SIGKILL" });
      const reader = proc.stdout.getReader();
      let seen = "";
      while ((seen.match(/writing/g) ?? []).length < 2) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += new TextDecoder().decode(value);
      }
      // Both writers are inside their fill; give a loaded machine a moment to show their temps (it flaked under load 5).
      const want = [`.out.bin.tmp-${proc.pid}-1`, `ck.tmp-${proc.pid}`];
      for (let i = 0; i < 200 && temps(d).length < want.length; i++) await Bun.sleep(10);
      if (temps(d).length < want.length) {
        proc.kill("SIGKILL");
        await proc.exited;
        throw new Error(`temps gone: ${JSON.stringify(temps(d))}; child exit ${proc.exitCode} signal ${proc.signalCode}; stdout ${JSON.stringify(seen)}; stderr ${await new Response(proc.stderr).text()}`);
      }
      expect(temps(d).sort()).toEqual(want);
      proc.kill(sig);
      await proc.exited;
      expect(proc.signalCode).toBe(sig);
      expect(readdirSync(d)).toEqual(["slow.ts"]);
    });

  test.skipIf(!CAN_MOUNT)("ENOSPC mid-write names the path, removes the temp file and keeps the old content", async () => {
    const fs = tmpfs(64)!;
    const f = join(fs, "big.safetensors");
    await writeBytesAtomic(f, "old");
    const e = await refused(writeBytesAtomic(f, new Uint8Array(1 << 20)));
    expect(e.exitCode).toBe(1);
    expect(e.message).toBe(`${f} cannot be written: no space left on the device; nothing was written (the temp file was removed, the existing file is unchanged)`);
    expect(readFileSync(f, "utf8")).toBe("old");
    expect(temps(fs)).toEqual([]);
  });
});

describe("5. location problems are found before the work, naming the user's path", () => {
  test("a missing directory: refused before the writer runs, not as ENOENT on the temp file", async () => {
    const d = fresh();
    const out = join(d, "missing", "out.safetensors");
    let filled = false;
    const e = await refused(writeFileAtomic(out, async () => void (filled = true)));
    expect(filled).toBe(false);
    expect(e.message).toBe(`${out} cannot be written: its directory ${join(d, "missing")} does not exist`);
    expect((await refused(prepareOutput(out, { kind: "file", label: "parity: --out" }))).message).toBe(
      `parity: --out ${out} cannot be written: its directory ${join(d, "missing")} does not exist`,
    );
    // a directory output creates its missing parents, so that is fine
    expect((await prepareOutput(join(d, "a", "b", "out"), { kind: "dir" })).existing).toBeNull();
    expect(existsSync(join(d, "a"))).toBe(false);
  });

  test("a file where a directory is expected (ENOTDIR), for file and directory outputs", async () => {
    const d = fresh();
    writeFileSync(join(d, "afile"), "x");
    const out = join(d, "afile", "out.safetensors");
    expect((await refused(prepareOutput(out, { kind: "file", label: "parity: --out" }))).message).toBe(`parity: --out ${out} cannot be written: ${join(d, "afile")} is a regular file, not a directory`);
    const dirOut = join(d, "afile", "sub", "out");
    expect((await refused(prepareOutput(dirOut, { kind: "dir", label: "alignx pack: --out" }))).message).toBe(
      `alignx pack: --out ${dirOut} cannot be created: ${join(d, "afile")} is a regular file, not a directory`,
    );
    expect((await refused(saveDirAtomic(dirOut, async () => {}))).message).toBe(`${dirOut} cannot be created: ${join(d, "afile")} is a regular file, not a directory`);
    expect(readdirSync(d)).toEqual(["afile"]);
  });

  test.skipIf(!CAN_MOUNT)("a read-only filesystem (EROFS, as root the way EACCES is met) is refused up front", async () => {
    const [src, ro] = readOnlyBind()!;
    writeFileSync(join(src, "old.safetensors"), "old");
    for (const out of [join(ro, "new.safetensors"), join(ro, "old.safetensors")]) {
      const e = await refused(prepareOutput(out, { kind: "file", label: "parity: --out" }));
      expect(e.exitCode).toBe(2);
      expect(e.message).toBe(`parity: --out ${out} cannot be written: ${ro} is on a read-only filesystem`);
    }
    expect((await refused(prepareOutput(join(ro, "packed"), { kind: "dir", label: "alignx pack: --out" }))).message).toContain("is on a read-only filesystem");
    // the writer itself names the path, not the temp file
    const e = await refused(writeBytesAtomic(join(ro, "new.safetensors"), "x"));
    expect(e.message).toStartWith(`${join(ro, "new.safetensors")} cannot be written: read-only filesystem`);
    expect(e.message).not.toContain(".tmp-");
  });

  test.skipIf(!CAN_MOUNT)("a full filesystem, or one with less free space than the output needs, is refused up front", async () => {
    const fs = tmpfs(64)!;
    const out = join(fs, "out.safetensors");
    const e = await refused(prepareOutput(out, { kind: "file", label: "parity: --out", minBytes: 1 << 20 }));
    expect(e.message).toMatch(new RegExp(`^parity: --out ${out} cannot be written: no space left on the device \\(\\d+ bytes free in ${fs}, at least 1048576 needed\\)$`));
    writeFileSync(join(fs, "filler"), new Uint8Array(128 << 10).subarray(0, 60 << 10));
    try {
      writeFileSync(join(fs, "filler2"), new Uint8Array(64 << 10));
    } catch {
      // full now
    }
    expect((await refused(prepareOutput(out, { kind: "file" }))).message).toContain("no space left on the device");
    expect(temps(fs)).toEqual([]);
  });

  test("the check leaves nothing behind and returns where the output goes", async () => {
    const d = fresh();
    writeFileSync(join(d, "real"), "x");
    symlinkSync("real", join(d, "link"));
    const t = await prepareOutput(join(d, "link"), { kind: "file" });
    expect(t.target).toBe(join(d, "real"));
    expect(t.existing?.isFile()).toBe(true);
    expect((await resolveOutputTarget(join(d, "new"), "file")).existing).toBeNull();
    expect(readdirSync(d).sort()).toEqual(["link", "real"]);
  });
});
