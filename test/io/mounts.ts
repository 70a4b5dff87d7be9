// Scratch filesystems for the output-path tests: a tiny tmpfs (to fill: ENOSPC) and a read-only bind mount
// (EROFS: how a root test meets an unwritable place, since permission bits do not stop root). Both need root
// with CAP_SYS_ADMIN; `canMount` says whether this run has it, and the tests skip with NO_MOUNT otherwise.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const NO_MOUNT = "needs root with CAP_SYS_ADMIN (mount) to make a full or a read-only filesystem";

const ok = (cmd: string, ...args: string[]) => spawnSync(cmd, args, { stdio: "ignore" }).status === 0;

/** Mount points made here, for `unmountAll` (call it in afterAll). */
export class Mounts {
  private readonly made: string[] = [];
  private readonly root = mkdtempSync(join(tmpdir(), "alignx-mounts-"));
  private n = 0;

  private fresh(): string {
    const d = join(this.root, `m${++this.n}`);
    mkdirSync(d);
    return d;
  }

  /** A tmpfs of `kib` KiB at a fresh directory, or null. */
  tmpfs(kib: number): string | null {
    const d = this.fresh();
    if (!ok("mount", "-t", "tmpfs", "-o", `size=${kib}k`, "tmpfs", d)) return null;
    this.made.push(d);
    return d;
  }

  /** [a writable directory, a read-only view of it], or null. */
  readOnlyBind(): [string, string] | null {
    const src = this.fresh(), dst = this.fresh();
    if (!ok("mount", "--bind", src, dst)) return null;
    this.made.push(dst);
    if (!ok("mount", "-o", "remount,ro,bind", dst)) return null;
    return [src, dst];
  }

  /** Whether mounting works here (tries a tiny tmpfs). */
  get canMount(): boolean {
    const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
    return isRoot && this.tmpfs(16) !== null;
  }

  unmountAll(): void {
    for (const m of this.made.splice(0).reverse()) spawnSync("umount", ["-l", m]);
    spawnSync("rm", ["-rf", "--one-file-system", this.root]);
  }
}
