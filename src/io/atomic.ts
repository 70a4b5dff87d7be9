/**
 * Atomic file and directory replacement, so a crash or an error never leaves a half-written checkpoint
 * where a complete one is expected.
 *
 *   writeFileAtomic(path, fill)   fill a temp file in the same directory (`.NAME.tmp-PID-N`), fsync it,
 *                                 rename it over `path`, fsync the directory. On error the temp file is
 *                                 removed and `path` is untouched.
 *   saveDirAtomic(dir, fill)      fill `DIR.tmp-PID`, fsync every file in it, then swap it in: an existing
 *                                 DIR is renamed to `DIR.old-PID`, the new one renamed to DIR, the old one
 *                                 deleted. The old checkpoint stays whole until the new one is complete; on
 *                                 error the temp directory is removed and DIR is untouched.
 *
 * POSIX rename cannot swap two directories, so between the two renames of a replacement DIR is briefly
 * absent. A process killed in that instant leaves `DIR.old-PID` (complete) and maybe `DIR.tmp-PID`;
 * `recoverInterruptedSave(dir)` (run at the start of every saveDirAtomic) puts the old one back and
 * removes leftovers of processes that no longer run.
 *
 * Both writers apply the output-path rules of output.ts themselves, so every caller gets them: only a regular
 * file (a directory) or a new path is replaced, a symbolic link is followed (its target replaced, the link
 * kept), a read-only one is refused, a replaced file keeps its mode; stale `.NAME.tmp-PID-N` files of dead
 * processes are removed first; temps in flight are removed on SIGINT/SIGTERM/exit; write errors name `path`,
 * never the temp file. Commands also call output.ts's prepareOutput before their work (inputs, free space).
 */
import { chmod, mkdir, open, readdir, rename, rm, type FileHandle } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { CheckpointError } from "./errors.ts";
import { outputWriteError, processAlive, removeStaleTemps, resolveOutputTarget, restoreOld, tempFileName, trackTemp } from "./output.ts";

let seq = 0;

/**
 * Create or replace `path` atomically: `fill` writes the content through a handle to a temp file. `path` must
 * be a new path or a writable regular file, or a symbolic link to one (which is followed: its target is
 * replaced, the link stays); anything else is an OutputPathError before `fill` runs. A replaced file keeps
 * its permission bits (and, for root, its owner).
 */
export async function writeFileAtomic(path: string, fill: (fh: FileHandle) => Promise<void>): Promise<void> {
  const { target, existing } = await resolveOutputTarget(path, "file");
  const dir = dirname(target);
  const tmp = tempFileName(target, ++seq);
  const untrack = trackTemp(tmp);
  await removeStaleTemps(target);
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, "wx", 0o644);
    if (existing) await keepOwnership(fh, existing);
    await fill(fh);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, target);
  } catch (e) {
    await fh?.close().catch(() => {});
    await rm(tmp, { force: true }).catch(() => {});
    throw outputWriteError(e, path, tmp, existing !== null);
  } finally {
    untrack();
  }
  await syncDir(dir);
}

/** Give the temp file the replaced file's permission bits (not set-id bits) and, where allowed, its owner. */
async function keepOwnership(fh: FileHandle, st: { mode: number; uid: number; gid: number }): Promise<void> {
  await fh.chmod(st.mode & 0o1777);
  const uid = typeof process.getuid === "function" ? process.getuid() : -1;
  const gid = typeof process.getgid === "function" ? process.getgid() : -1;
  if (st.uid !== uid || st.gid !== gid) await fh.chown(st.uid, st.gid).catch(() => {}); // only root may give a file away
}

/** Write all of `data` at `position` (FileHandle.write may write less than asked). */
export async function writeAll(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    const n = Math.min(data.byteLength - done, 1 << 30);
    const { bytesWritten } = await fh.write(data, done, n, position + done);
    if (bytesWritten <= 0) throw new Error(`write returned ${bytesWritten} at byte ${position + done}`);
    done += bytesWritten;
  }
}

/** `writeFileAtomic` for a whole string or byte array (config.json, the shard index, ...). */
export async function writeBytesAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  await writeFileAtomic(path, (fh) => writeAll(fh, bytes, 0));
}

/** fsync a directory so a rename in it survives a power loss (best effort: not every filesystem allows it). */
export async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, "r");
    await fh.sync();
  } catch {
    // not supported here; the rename itself is still atomic
  } finally {
    await fh?.close().catch(() => {});
  }
}

const saving = new Set<string>();

/**
 * Build a directory atomically: `fill(tmpDir)` writes every file into `DIR.tmp-PID`; only when it
 * resolves does the result replace `dir` (see the module comment). Returns what `fill` returns.
 */
export async function saveDirAtomic<T>(dir: string, fill: (tmpDir: string) => Promise<T>): Promise<T> {
  // A directory, a symbolic link to one (followed: the directory it points to is replaced) or a new path.
  const { target } = await resolveOutputTarget(dir, "dir");
  if (saving.has(target)) throw new CheckpointError("another save to this directory is still in progress in this process", target);
  saving.add(target);
  const tmp = `${target}.tmp-${process.pid}`;
  const untrack = trackTemp(tmp);
  try {
    const parent = dirname(target);
    await mkdir(parent, { recursive: true });
    await recoverInterruptedSave(target);
    const { existing } = await resolveOutputTarget(target, "dir"); // again: the recovery may have put one back
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp);
    let result: T;
    try {
      result = await fill(tmp);
      if (existing) await chmod(tmp, existing.mode & 0o1777); // the replaced directory's permission bits
      await syncTree(tmp);
    } catch (e) {
      await rm(tmp, { recursive: true, force: true }).catch(() => {});
      throw e;
    }
    if (!existing) {
      try {
        await rename(tmp, target);
      } catch (e) {
        await rm(tmp, { recursive: true, force: true }).catch(() => {});
        throw e;
      }
      await syncDir(parent);
      return result;
    }
    const old = `${target}.old-${process.pid}`;
    await rm(old, { recursive: true, force: true });
    const untrackOld = trackTemp(old, restoreOld(target, old));
    try {
      await rename(target, old);
      try {
        await rename(tmp, target);
      } catch (e) {
        await rename(old, target).catch(() => {});
        await rm(tmp, { recursive: true, force: true }).catch(() => {});
        throw e;
      }
      await syncDir(parent);
      await rm(old, { recursive: true, force: true });
    } finally {
      untrackOld();
    }
    return result;
  } finally {
    untrack();
    saving.delete(target);
  }
}

/**
 * Clean up after a save that was killed: if `dir` is missing but `DIR.old-PID` exists (killed between the
 * two renames), rename the old one back; remove `DIR.tmp-PID` and `DIR.old-PID` of processes that no longer
 * run. Returns what it did, one line per action.
 */
export async function recoverInterruptedSave(dir: string): Promise<string[]> {
  const target = resolve(dir);
  const parent = dirname(target);
  const base = basename(target);
  const names = await readdir(parent).catch(() => [] as string[]);
  const done: string[] = [];
  const leftovers = names
    .map((n) => /^(.*)\.(tmp|old)-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null && m[1] === base && (Number(m[3]) === process.pid || !processAlive(Number(m[3])))); // our own leftovers are never in use (saves to one dir are serialized)
  let present = names.includes(base);
  for (const m of leftovers.filter((x) => x[2] === "old")) {
    const p = join(parent, m[0]);
    if (!present) {
      await rename(p, target);
      present = true;
      done.push(`restored ${p} to ${target}`);
    } else {
      await rm(p, { recursive: true, force: true });
      done.push(`removed ${p}`);
    }
  }
  for (const m of leftovers.filter((x) => x[2] === "tmp")) {
    const p = join(parent, m[0]);
    await rm(p, { recursive: true, force: true });
    done.push(`removed ${p}`);
  }
  return done;
}


async function syncTree(dir: string): Promise<void> {
  for (const ent of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name);
    if (ent.isDirectory()) await syncTree(p);
    else if (ent.isFile()) {
      const fh = await open(p, "r");
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  }
  await syncDir(dir);
}
