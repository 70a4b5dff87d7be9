// Atomic saves: a new directory appears only complete; replacing keeps the old one whole until the new one
// is; a failing writer leaves the old one and no temp files; leftovers of killed saves are recovered.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { recoverInterruptedSave, saveDirAtomic, writeBytesAtomic, writeFileAtomic } from "../../src/io/atomic.ts";
import { CheckpointError } from "../../src/io/errors.ts";

const TMP = mkdtempSync(join(tmpdir(), "alignx-io-atomic-"));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(TMP, `ck-${++n}`);
/** A pid that cannot be running (above Linux's largest pid_max, 2^22). */
const DEAD = 4_194_999;
const leftovers = () => readdirSync(TMP).filter((f) => /\.(tmp|old)-/.test(f));

describe("saveDirAtomic", () => {
  test("a new directory appears only once fill has finished, at DIR.tmp-PID until then", async () => {
    const d = fresh();
    const res = await saveDirAtomic(d, async (tmp) => {
      expect(tmp).toBe(`${d}.tmp-${process.pid}`);
      writeFileSync(join(tmp, "a.txt"), "A");
      mkdirSync(join(tmp, "sub"));
      writeFileSync(join(tmp, "sub", "b.txt"), "B");
      expect(existsSync(d)).toBe(false);
      return 42;
    });
    expect(res).toBe(42);
    expect(readFileSync(join(d, "sub", "b.txt"), "utf8")).toBe("B");
    expect(leftovers()).toEqual([]);
  });

  test("replacing: the old directory stays whole while the new one is written, then is gone", async () => {
    const d = fresh();
    await saveDirAtomic(d, async (tmp) => writeFileSync(join(tmp, "old.txt"), "old"));
    await saveDirAtomic(d, async (tmp) => {
      writeFileSync(join(tmp, "new.txt"), "new");
      expect(readdirSync(d)).toEqual(["old.txt"]);
      expect(readFileSync(join(d, "old.txt"), "utf8")).toBe("old");
    });
    expect(readdirSync(d)).toEqual(["new.txt"]);
    expect(leftovers()).toEqual([]);
  });

  test("a failing fill leaves the old directory untouched and removes the temp one", async () => {
    const d = fresh();
    await saveDirAtomic(d, async (tmp) => writeFileSync(join(tmp, "old.txt"), "old"));
    await expect(
      saveDirAtomic(d, async (tmp) => {
        writeFileSync(join(tmp, "half.txt"), "half");
        throw new Error("disk full");
      }),
    ).rejects.toThrow("disk full");
    expect(readdirSync(d)).toEqual(["old.txt"]);
    expect(leftovers()).toEqual([]);
    // And a failing first save leaves nothing at all.
    const d2 = fresh();
    await expect(saveDirAtomic(d2, async () => Promise.reject(new Error("no")))).rejects.toThrow("no");
    expect(existsSync(d2)).toBe(false);
    expect(leftovers()).toEqual([]);
  });

  test("refuses to replace a file, and a second concurrent save to the same directory", async () => {
    const f = fresh();
    writeFileSync(f, "x");
    await expect(saveDirAtomic(f, async () => {})).rejects.toThrow(/exists and is not a directory; refusing to replace it/);
    expect(readFileSync(f, "utf8")).toBe("x");
    const d = fresh();
    let release!: () => void;
    const first = saveDirAtomic(d, () => new Promise<void>((r) => (release = r)));
    await Bun.sleep(10);
    const second = saveDirAtomic(d, async () => {});
    await expect(second).rejects.toBeInstanceOf(CheckpointError);
    await expect(second).rejects.toThrow(/another save to this directory is still in progress/);
    release();
    await first;
    expect(existsSync(d)).toBe(true);
  });

  test("creates missing parent directories", async () => {
    const d = join(fresh(), "a", "b");
    await saveDirAtomic(d, async (tmp) => writeFileSync(join(tmp, "x"), "1"));
    expect(readFileSync(join(d, "x"), "utf8")).toBe("1");
  });
});

describe("recoverInterruptedSave", () => {
  test("killed between the two renames: the old directory is put back, a dead process's temp removed", async () => {
    const d = fresh();
    mkdirSync(`${d}.old-${DEAD}`);
    writeFileSync(join(`${d}.old-${DEAD}`, "w"), "old");
    mkdirSync(`${d}.tmp-${DEAD}`);
    const done = await recoverInterruptedSave(d);
    expect(done).toEqual([`restored ${d}.old-${DEAD} to ${d}`, `removed ${d}.tmp-${DEAD}`]);
    expect(readFileSync(join(d, "w"), "utf8")).toBe("old");
    expect(leftovers()).toEqual([]);
  });

  test("killed after the swap: the stale old copy is removed; a live process's temp directory is left alone", async () => {
    const d = fresh();
    mkdirSync(d);
    mkdirSync(`${d}.old-${DEAD}`);
    const live = `${d}.tmp-${process.ppid}`; // our parent is running
    mkdirSync(live);
    expect(await recoverInterruptedSave(d)).toEqual([`removed ${d}.old-${DEAD}`]);
    expect(existsSync(live)).toBe(true);
    rmSync(live, { recursive: true });
  });

  test("saveDirAtomic recovers first, then saves", async () => {
    const d = fresh();
    mkdirSync(`${d}.old-${DEAD}`);
    await saveDirAtomic(d, async (tmp) => writeFileSync(join(tmp, "x"), "new"));
    expect(readdirSync(d)).toEqual(["x"]);
    expect(leftovers()).toEqual([]);
  });
});

describe("writeFileAtomic", () => {
  test("replaces the file whole; a failing writer keeps the old content and leaves no temp file", async () => {
    const f = join(TMP, "file.txt");
    await writeBytesAtomic(f, "first");
    expect(readFileSync(f, "utf8")).toBe("first");
    await expect(
      writeFileAtomic(f, async (fh) => {
        await fh.write("partial");
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    expect(readFileSync(f, "utf8")).toBe("first");
    expect(readdirSync(TMP).filter((x) => x.startsWith(".file.txt.tmp-"))).toEqual([]);
    await writeBytesAtomic(f, new Uint8Array([104, 105]));
    expect(readFileSync(f, "utf8")).toBe("hi");
  });
});
