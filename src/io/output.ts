/**
 * Output paths: what every command (and every atomic write, src/io/atomic.ts) promises about the paths it
 * writes. README "What the CLI promises about output paths" is the user's version of this comment.
 *
 *   1. Never an input. `prepareOutput(path, { inputs })` refuses an output that is the same file or directory as
 *      an input (by real path and by device + inode, so symbolic links, `..` and hard links are seen through),
 *      the same file as one directly inside an input directory (--model's weights), any new path inside an input
 *      directory, and, for a directory output, one that holds an input (replacing it would delete the input).
 *   2. Only over a regular file (a directory, for a directory output) or a new path. A symbolic link is
 *      FOLLOWED: the file or directory it points to is replaced atomically (the temp file lives beside the
 *      target) and the link itself stays as it was. A dangling link, a link loop, a device node, a FIFO, a
 *      socket, a directory where a file is written or a file where a directory is: refused.
 *   3. A read-only output (no write bit in its mode, e.g. 0444 or 0555) is REFUSED, whoever runs the command
 *      (root included, for whom the permission bits would not stop a rename): it was marked read-only, so it is
 *      not replaced. A writable one keeps its permission bits (and, where allowed, its owner) when replaced.
 *   4. Temp files are `.NAME.tmp-PID-N` beside NAME (directories: `DIR.tmp-PID`, see atomic.ts). One whose
 *      process no longer runs is removed by the next write to the same target (`removeStaleTemps`); the writers
 *      remove their own on every error path, and `trackTemp` removes those in flight on SIGINT, SIGTERM and
 *      process.exit (only SIGKILL or a crash can leave one, for the next write to clean).
 *   5. Checked before the work. A command calls `prepareOutput` right after parsing its options: it applies
 *      1-3, removes stale temp files, and proves the location writable by creating and removing a temp file
 *      (a temp directory) there, so a missing directory, a file where a directory is expected, EACCES, a
 *      read-only filesystem and a full one (no free block, or fewer free bytes than `minBytes`) are reported
 *      before any computation, naming the user's path, never the temp file. Errors found while writing
 *      (ENOSPC mid-write, ...) are rethrown by `outputWriteError` naming the user's path too.
 *
 * A file output needs its directory to exist; a directory output's missing parents are created (mkdir -p) when
 * it is written, so for it the nearest existing ancestor must be a writable directory. Refusals are
 * OutputPathErrors with exit code 2 (usage: the user named a path the command will not write); failures while
 * writing have exit code 1. The checks and the write are separate steps, so a path changed by another process
 * in between is only caught by the write's own rules (2 and 3, which writeFileAtomic/saveDirAtomic re-apply).
 */
import { rmSync, renameSync, existsSync, type Stats } from "node:fs";
import { lstat, mkdir, open, readdir, readlink, realpath, rm, rmdir, stat, statfs } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";

/** An output path the command will not write (exit 2), or a write that failed (exit 1); names the user's path. */
export class OutputPathError extends Error {
  override name = "OutputPathError";
  constructor(
    message: string,
    /** The output path as the user gave it. */
    readonly path: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

/** "file": written whole by writeFileAtomic. "dir": a directory replaced whole by saveDirAtomic. */
export type OutputKind = "file" | "dir";

/** An input of the command: a file or a directory it reads (`label` is how messages name it, e.g. "--model"). */
export interface OutputInput {
  path: string;
  label?: string;
}

export interface OutputTarget {
  /** The path as given. */
  path: string;
  /** The absolute path that is replaced or created: symbolic links (of the path and of its directories) followed. */
  target: string;
  /** What is there now (links followed), or null for a new path. */
  existing: Stats | null;
}

export interface PrepareOutputOptions {
  kind: OutputKind;
  /** How messages name the output, e.g. "parity: --out" (default: just the path). */
  label?: string;
  inputs?: readonly OutputInput[];
  /** A lower bound of the bytes the output takes: refused up front when its filesystem has fewer free. */
  minBytes?: number;
}

const named = (label: string | undefined, path: string) => (label ? `${label} ${path}` : path);
const errno = (e: unknown): string | undefined => (e as NodeJS.ErrnoException | null)?.code;
const idOf = (st: Stats) => `${st.dev}:${st.ino}`;
const statOrError = (p: string): Promise<Stats | NodeJS.ErrnoException> => stat(p).catch((e: NodeJS.ErrnoException) => e);
const isStats = (x: Stats | NodeJS.ErrnoException): x is Stats => typeof (x as Stats).isDirectory === "function";

/** What a stat says the thing is, for messages. */
export function describeType(st: Stats): string {
  if (st.isFile()) return "a regular file";
  if (st.isDirectory()) return "a directory";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isFIFO()) return "a FIFO (named pipe)";
  if (st.isSocket()) return "a socket";
  if (st.isSymbolicLink()) return "a symbolic link";
  return "not a regular file";
}

const modeString = (st: Stats) => `0${(st.mode & 0o777).toString(8).padStart(3, "0")}`;

/** Why an errno stops a write, in words. */
function reason(code: string | undefined, fallback: string): string {
  switch (code) {
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EROFS":
      return "read-only filesystem";
    case "ENOSPC":
      return "no space left on the device";
    case "EDQUOT":
      return "disk quota exceeded";
    case "EFBIG":
      return "file too large for the filesystem";
    case "EIO":
      return "I/O error";
    case "ENOENT":
      return "no such file or directory";
    case "ENOTDIR":
      return "a component of the path is not a directory";
    case "EISDIR":
      return "it is a directory";
    case "ENAMETOOLONG":
      return "the name is too long";
    case "ELOOP":
      return "too many levels of symbolic links";
    default:
      return code ? `${code}: ${fallback}` : fallback;
  }
}

/**
 * Where `path` really is and what is there, without judging it: links followed, a new path placed in its real
 * directory. Problems reaching it (a missing directory for a file, a file among the directories, a dangling
 * link) are OutputPathErrors.
 */
async function locate(path: string, kind: OutputKind, label?: string): Promise<OutputTarget> {
  const who = named(label, path);
  const fail = (msg: string) => new OutputPathError(`${who} ${msg}`, path);
  if (path === "") throw fail("is empty");
  const abs = resolve(path);
  let lst: Stats | null = null;
  try {
    lst = await lstat(abs);
  } catch (e) {
    if (errno(e) === "ENOTDIR") {
      // a file (or another non-directory) among the directories of the path: name it
      for (let a = dirname(abs); dirname(a) !== a; a = dirname(a)) {
        const st = await stat(a).catch(() => null);
        if (st && !st.isDirectory()) throw fail(`${kind === "file" ? "cannot be written" : "cannot be created"}: ${a} is ${describeType(st)}, not a directory`);
      }
    }
    if (errno(e) !== "ENOENT") throw fail(`cannot be reached: ${reason(errno(e), (e as Error).message)}`);
  }
  if (lst === null) {
    if (kind === "file") {
      const dir = dirname(abs);
      const st = await statOrError(dir);
      if (!isStats(st)) {
        if (st.code === "ENOENT") throw fail(`cannot be written: its directory ${dir} does not exist`);
        throw fail(`cannot be written: its directory ${dir} cannot be reached (${reason(st.code, st.message)})`);
      }
      if (!st.isDirectory()) throw fail(`cannot be written: ${dir} is ${describeType(st)}, not a directory`);
      return { path, target: join(await realpath(dir), basename(abs)), existing: null };
    }
    // A directory output: its missing parents are created when it is written; the nearest existing one counts.
    let a = dirname(abs);
    const rest = [basename(abs)];
    for (;;) {
      const st = await statOrError(a);
      if (isStats(st)) {
        if (!st.isDirectory()) throw fail(`cannot be created: ${a} is ${describeType(st)}, not a directory`);
        break;
      }
      if (st.code !== "ENOENT") throw fail(`cannot be created: ${a} cannot be reached (${reason(st.code, st.message)})`);
      rest.unshift(basename(a));
      a = dirname(a);
    }
    return { path, target: join(await realpath(a), ...rest), existing: null };
  }
  if (lst.isSymbolicLink()) {
    let target: string;
    try {
      target = await realpath(abs);
    } catch (e) {
      const to = await readlink(abs).catch(() => "?");
      if (errno(e) === "ENOENT") throw fail(`is a symbolic link to ${to}, which does not exist; outputs are not created through a dangling link`);
      throw fail(`is a symbolic link to ${to} that cannot be followed (${reason(errno(e), (e as Error).message)})`);
    }
    return { path, target, existing: await stat(target) };
  }
  return { path, target: join(await realpath(dirname(abs)), basename(abs)), existing: lst };
}

/** Rules 2 and 3 on a located output. */
function judge(t: OutputTarget, kind: OutputKind, label?: string): void {
  const st = t.existing;
  if (!st) return;
  const fail = (msg: string) => new OutputPathError(`${named(label, t.path)}${t.target !== resolve(t.path) ? ` (${t.target})` : ""} ${msg}`, t.path);
  if (kind === "file" && !st.isFile()) throw fail(`is ${describeType(st)}; outputs are written only over regular files or new paths`);
  if (kind === "dir" && !st.isDirectory()) throw fail(`exists and is not a directory; refusing to replace it (it is ${describeType(st)})`);
  if ((st.mode & 0o222) === 0)
    throw fail(`is read-only (mode ${modeString(st)}); refusing to replace it (make it writable, e.g. chmod u+w, or choose another path)`);
}

/**
 * Rules 2 and 3 for a writer: where `path` really is (links followed) and what is there. Throws an
 * OutputPathError (exit 2) for anything but a writable regular file (directory, for "dir") or a new path.
 */
export async function resolveOutputTarget(path: string, kind: OutputKind, label?: string): Promise<OutputTarget> {
  const t = await locate(path, kind, label);
  judge(t, kind, label);
  return t;
}

/** The identities (dev:ino) of `p`'s existing ancestors, `p` excluded, nearest first. */
async function ancestorIds(p: string): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  for (let a = dirname(p); ; a = dirname(a)) {
    const st = await stat(a).catch(() => null);
    if (st && !ids.has(idOf(st))) ids.set(idOf(st), a);
    if (dirname(a) === a) break;
  }
  return ids;
}

const inside = (child: string, parent: string) => child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);

/** Rule 1: `t` is no input, no file directly inside an input directory, nothing inside an input directory; a directory output holds no input. */
async function checkNotAnInput(t: OutputTarget, kind: OutputKind, inputs: readonly OutputInput[], label?: string): Promise<void> {
  const who = named(label, t.path);
  const fail = (msg: string) => new OutputPathError(`${who} ${msg}`, t.path);
  const outId = t.existing ? idOf(t.existing) : null;
  const around = await ancestorIds(t.target);
  for (const input of inputs) {
    if (!input.path) continue;
    const real = await realpath(input.path).catch(() => null);
    const st = real === null ? null : await stat(real).catch(() => null);
    if (real === null || st === null) continue; // a missing input: its reader says so
    const what = named(input.label, input.path);
    if (real === t.target || (outId !== null && idOf(st) === outId))
      throw fail(`is the same ${st.isDirectory() ? "directory" : "file"} as ${what}; refusing to overwrite an input`);
    if (st.isDirectory()) {
      if (inside(t.target, real) || around.has(idOf(st))) throw fail(`is inside ${what}, an input directory; refusing to write into an input (choose a path outside it)`);
      if (outId !== null) {
        // a hard link (or a bind-mounted alias) of a file in the input directory
        const names = await readdir(real).catch(() => [] as string[]);
        for (const n of names.slice(0, 10_000)) {
          const s = await stat(join(real, n)).catch(() => null);
          if (s && idOf(s) === outId) throw fail(`is the same file as ${join(input.path, n)}, in ${what}; refusing to overwrite an input`);
        }
      }
    }
    if (kind === "dir" && t.existing?.isDirectory()) {
      const up = await ancestorIds(real);
      if (inside(real, t.target) || (outId !== null && up.has(outId))) throw fail(`holds ${what}, an input; replacing it would delete the input`);
    }
  }
}

/** The temp file name writeFileAtomic uses for `target` (absolute): `.NAME.tmp-PID-N` beside it. */
export function tempFileName(target: string, n: number, pid = process.pid): string {
  return join(dirname(target), `.${basename(target)}.tmp-${pid}-${n}`);
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * Remove `.NAME.tmp-PID-N` files beside `target` whose process no longer runs (a killed write), and this
 * process's own that no write has in flight. Returns the paths removed.
 */
export async function removeStaleTemps(target: string): Promise<string[]> {
  const dir = dirname(target);
  const re = new RegExp(`^\\.${escapeRe(basename(target))}\\.tmp-(\\d+)-(\\d+)$`);
  const removed: string[] = [];
  for (const n of await readdir(dir).catch(() => [] as string[])) {
    const m = re.exec(n);
    if (!m) continue;
    const p = join(dir, n);
    const pid = Number(m[1]);
    if (pid === process.pid ? live.has(p) : processAlive(pid)) continue;
    const st = await lstat(p).catch(() => null);
    if (!st || !st.isFile()) continue; // only the regular files a writer makes
    await rm(p, { force: true }).catch(() => {});
    removed.push(p);
  }
  return removed;
}

/** Whether a process with this pid runs (EPERM: it does, as another user). This process counts as running. */
export function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errno(e) === "EPERM";
  }
}

// ---- temp files in flight: removed on SIGINT, SIGTERM and process.exit -------------------------------------

const live = new Map<string, () => void>();

function cleanupAll(): void {
  for (const [, undo] of [...live].reverse()) {
    try {
      undo();
    } catch {
      // best effort: the next write cleans what is left
    }
  }
  live.clear();
}

function onSignal(sig: NodeJS.Signals): void {
  cleanupAll();
  unlisten();
  process.kill(process.pid, sig); // the default action now: the process ends as the signal meant
}
const onExit = () => cleanupAll();

function listen(): void {
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", onExit);
}
function unlisten(): void {
  process.removeListener("SIGINT", onSignal);
  process.removeListener("SIGTERM", onSignal);
  process.removeListener("exit", onExit);
}

/**
 * Register a temp path in flight; `undo` (synchronous) removes it, or for a directory swap puts the old one
 * back. Run on SIGINT, SIGTERM or process.exit while registered. Returns the function that unregisters it.
 */
export function trackTemp(path: string, undo: () => void = () => rmSync(path, { recursive: true, force: true })): () => void {
  if (live.size === 0) listen();
  live.set(path, undo);
  return () => {
    if (live.get(path) !== undo) return;
    live.delete(path);
    if (live.size === 0) unlisten();
  };
}

/** The undo of a directory swap's window (DIR renamed to DIR.old-PID, the new one not yet in place). */
export function restoreOld(target: string, old: string): () => void {
  return () => {
    if (!existsSync(target)) renameSync(old, target);
    else rmSync(old, { recursive: true, force: true });
  };
}

// ---- the check before the work ------------------------------------------------------------------------------

/** Rule 5: create and remove a temp entry where the output goes, and look at the free space there. */
async function probe(t: OutputTarget, kind: OutputKind, o: PrepareOutputOptions): Promise<void> {
  const who = named(o.label, t.path);
  let dir = dirname(t.target);
  let name: string;
  if (kind === "file") name = basename(tempFileName(t.target, 0));
  else {
    // the nearest existing directory on the way to the target (missing parents are created by the write)
    let first = basename(t.target);
    while (!(await stat(dir).then((s) => s.isDirectory()).catch(() => false))) {
      first = basename(dir);
      dir = dirname(dir);
    }
    name = dir === dirname(t.target) ? `${first}.tmp-${process.pid}` : `.${first}.tmp-${process.pid}-0`;
  }
  const p = join(dir, name);
  const fail = (code: string | undefined, msg: string) =>
    new OutputPathError(`${who} cannot be written: ${code === "EROFS" ? `${dir} is on a read-only filesystem` : `${reason(code, msg)} in ${dir}`}`, t.path);
  try {
    if (kind === "file") {
      await rm(p, { force: true });
      const fh = await open(p, "wx", 0o600);
      await fh.close();
      await rm(p, { force: true });
    } else {
      await rm(p, { recursive: true, force: true });
      await mkdir(p);
      await rmdir(p);
    }
  } catch (e) {
    await rm(p, { recursive: true, force: true }).catch(() => {});
    throw fail(errno(e), (e as Error).message);
  }
  const fs = await statfs(dir).catch(() => null);
  if (fs && fs.blocks > 0) {
    const free = (typeof process.getuid === "function" && process.getuid() === 0 ? fs.bfree : fs.bavail) * fs.bsize;
    const need = Math.max(1, o.minBytes ?? 1);
    if (free < need)
      throw new OutputPathError(
        `${who} cannot be written: no space left on the device (${free} bytes free in ${dir}${o.minBytes ? `, at least ${need} needed` : ""})`,
        t.path,
      );
  }
}

/**
 * Everything about an output path that can be known before the work (rules 1-5 in the module comment): call it
 * right after parsing the options. Returns where the output will be written; throws an OutputPathError (exit 2)
 * naming the user's path (and the input it collides with).
 */
export async function prepareOutput(path: string, o: PrepareOutputOptions): Promise<OutputTarget> {
  const t = await locate(path, o.kind, o.label);
  await checkNotAnInput(t, o.kind, o.inputs ?? [], o.label);
  judge(t, o.kind, o.label);
  if (o.kind === "file") await removeStaleTemps(t.target);
  await probe(t, o.kind, o);
  return t;
}

/**
 * An error met while writing `path` (through the temp file `tmp`), as the user should read it: errno errors of
 * the write itself (the temp file, a full disk, ...) become an OutputPathError (exit 1) naming `path`, never the
 * temp file; anything else (an error of the data being written) is returned as it is.
 */
export function outputWriteError(e: unknown, path: string, tmp: string, existed: boolean): unknown {
  if (e instanceof OutputPathError) return e;
  const x = e as NodeJS.ErrnoException & { dest?: string };
  if (!x || typeof x.code !== "string") return e;
  const writeSide = ["ENOSPC", "EDQUOT", "EFBIG", "EIO", "EROFS"].includes(x.code);
  const ours = x.path === tmp || x.dest === tmp || x.path === undefined || x.path === path;
  if (!ours && !writeSide) return e;
  const msg = (x.message ?? "").split(tmp).join(path);
  const err = new OutputPathError(
    `${path} cannot be written: ${reason(x.code, msg)}; nothing was written (the temp file was removed${existed ? ", the existing file is unchanged" : ""})`,
    path,
    1,
  );
  (err as Error & { cause?: unknown }).cause = e;
  return err;
}
