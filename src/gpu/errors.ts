/**
 * Errors the GPU runtime raises. Each carries the process exit code the CLI should use
 * (1 = failure, 2 = usage), so commands never have to guess.
 */

export class GpuError extends Error {
  exitCode = 1;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * A usage error at an op's call site (bad shapes, axes, a released tensor, ...) or a launch past a kernel's
 * limits (more elements or dimensions than its indexing takes). Defined here so that the kernels layer can
 * raise it; src/tensor/shape.ts re-exports it.
 */
export class TensorError extends GpuError {}

/** What to install when Dawn finds no adapter at all. */
export const INSTALL_HINT =
  "No WebGPU adapter found: Dawn needs a Vulkan driver.\n" +
  "  - GPU server: install the GPU vendor's Vulkan driver (NVIDIA: the driver package, which ships nvidia_icd.json) and libvulkan1.\n" +
  "  - CPU only: install Mesa lavapipe >= 23 and the loader. Debian 12: `apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1`;\n" +
  "    Ubuntu 22.04+/Debian 13: `apt-get install mesa-vulkan-drivers libvulkan1`.\n" +
  "  - Or run `bash tools/setup.sh`, which does this for you.";

export class NoAdapterError extends GpuError {
  constructor(detail = "") {
    super(INSTALL_HINT + (detail ? `\n(${detail})` : ""));
  }
}

/** The user asked for an adapter that does not exist: a usage error (exit 2) listing what does. */
export class UnknownAdapterError extends GpuError {
  override exitCode = 2;
  constructor(wanted: string, available: string[]) {
    super(
      `no adapter matches '${wanted}'. Available adapters:\n` +
        (available.length ? available.map((a, i) => `  [${i}] ${a}`).join("\n") : "  (none)"),
    );
  }
}

export class DeviceLostError extends GpuError {
  constructor(reason: string, message: string) {
    super(`GPU device lost (${reason}): ${message || "no message"}`);
  }
}

/** A WGSL compile error, mapped back to the kernel file and its line. */
export class WgslError extends GpuError {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly column: number,
    detail: string,
  ) {
    super(`${file}:${line}:${column}: ${detail}`);
  }
}

/** A WebGPU validation error, attributed to the op that caused it. */
export class GpuValidationError extends GpuError {}

export class GpuOutOfMemoryError extends GpuError {
  constructor(requested: number, live: number, detail = "") {
    super(
      `out of GPU memory: requested ${fmtBytes(requested)} with ${fmtBytes(live)} live in the pool` +
        (detail ? ` (${detail})` : ""),
    );
  }
}

export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

/** One diagnostic of Dawn's WGSL error text: line and column (1-based), kind, text, and the caret run's length. */
export interface WgslDiagnostic {
  line: number;
  column: number;
  type: "error" | "warning" | "info";
  text: string;
  /** Characters under the `^^^` marker Dawn prints below the source line (0 when there is none). */
  length: number;
}

/**
 * The diagnostics in Dawn's text for a WGSL compile failure (`Error while parsing WGSL: :3:2 error: unresolved
 * value 'y'`, then the source line and a `^` marker): one per `:LINE:COL kind: text` line, in order. Where the
 * kernel runtime names the file (kernel.ts) and `getCompilationInfo()` of the user-script globals get their
 * line:col from.
 */
export function wgslDiagnostics(message: string): WgslDiagnostic[] {
  const lines = message.split("\n");
  const out: WgslDiagnostic[] = [];
  lines.forEach((l, i) => {
    const m = /:(\d+):(\d+) (error|warning|note|info): (.*)$/.exec(l);
    if (!m) return;
    const caret = /^\s*(\^+)\s*$/.exec(lines[i + 2] ?? "");
    const type = m[3] === "error" ? "error" : m[3] === "warning" ? "warning" : "info";
    out.push({ line: Number(m[1]), column: Number(m[2]), type, text: m[4]!, length: caret ? caret[1]!.length : 0 });
  });
  return out;
}
