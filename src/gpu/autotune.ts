/**
 * Autotuning: pick the fastest of a kernel's interchangeable variants by timing each on this device, and
 * remember the choice per adapter on disk, so only the first run on an adapter pays for it.
 *
 * Tuners: the layers above register what they tune (`registerTuner`; src/tensor/index.ts registers the
 * matmul variants, then flash against unfused attention, which runs on the tuned matmul), and `gpu.tune()`
 * runs them in registration order; `Gpu.open({ tune: true })` does so before returning (what `bun run bench`,
 * `alignx info` and the CLI commands open), so a device's "auto" kernel choices follow its adapter's cache.
 *
 * Timing: every candidate runs once untimed (pipeline compilation, first touch), then `reps` times; a sample
 * is the sum of the GPU timestamps of the dispatches it recorded (host wall time of run + sync without the
 * `timestamp-query` feature); the candidate with the lowest median wins.
 *
 * Cache: one JSON file per adapter, `autotune-<hash of the adapter's identity>.json` in $ALIGNX_CACHE_DIR,
 * else $XDG_CACHE_HOME/alignx, else ~/.cache/alignx. An entry's key names the problem and carries a hash of
 * the candidates' WGSL (the caller builds it into the key), so editing a kernel re-tunes it. The file is a cache: one
 * that cannot be read or does not have the expected shape is reported once on stderr (file, reason) and
 * replaced; it is written to a temp file and renamed, so readers never see half of one.
 * ALIGNX_AUTOTUNE=0 turns tuning off (ops use their built-in defaults); ALIGNX_AUTOTUNE=force re-tunes.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { AdapterEntry } from "./device.ts";
import { GpuError } from "./errors.ts";
import type { Gpu } from "./index.ts";

export interface Candidate {
  name: string;
  /** Record the work to time (it is synced and timed by the tuner). */
  run(): void;
}

export interface TuneResult {
  choice: string;
  /** Median milliseconds per candidate. */
  ms: Record<string, number>;
  method: "gpu-timestamps" | "host";
  tunedAt: string;
}

const FORMAT = "alignx-autotune/1";

/** Tunes some op's kernel choices on `gpu` (reading the cache, timing only what is missing); returns results by key. */
export type TunerFn = (gpu: Gpu) => Promise<Record<string, TuneResult>>;

const tuners: { name: string; fn: TunerFn }[] = [];

/**
 * Add a tuner that `gpu.tune()` (and `Gpu.open({ tune: true })`) runs, after those registered before it
 * (register a tuner after those whose choices it runs on). A name is registered once.
 */
export function registerTuner(name: string, fn: TunerFn): void {
  if (tuners.some((t) => t.name === name)) throw new GpuError(`registerTuner: a tuner named "${name}" is already registered`);
  tuners.push({ name, fn });
}

/** The registered tuners, in the order `gpu.tune()` runs them. */
export function registeredTuners(): readonly { readonly name: string; readonly fn: TunerFn }[] {
  return tuners;
}

/** Where the per-adapter files live. */
export function cacheDir(): string {
  const env = process.env;
  if (env.ALIGNX_CACHE_DIR) return env.ALIGNX_CACHE_DIR;
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "alignx");
}

/** A short stable hash (hex) of a string. */
export function hashText(s: string): string {
  return Bun.hash(s).toString(16).padStart(16, "0");
}

/** The fields that identify an adapter and its driver for tuning purposes. */
export function adapterIdentity(a: AdapterEntry, binding: string): string {
  return JSON.stringify([a.vendor, a.architecture, a.description, a.backend, a.kind, a.subgroupMinSize, a.subgroupMaxSize, binding]);
}

/** The median of samples (the mean of the middle two for an even count). */
export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function validEntry(v: unknown): v is TuneResult {
  if (!v || typeof v !== "object") return false;
  const e = v as Record<string, unknown>;
  return typeof e.choice === "string" && !!e.ms && typeof e.ms === "object" && Object.values(e.ms).every((x) => typeof x === "number") && e.choice in (e.ms as object);
}

export class Autotuner {
  private entries = new Map<string, TuneResult>();
  private loaded = false;
  private readonly timedKeys = new Set<string>();
  /** The cache file's name in the cache directory. */
  readonly fileName: string;

  constructor(
    private readonly gpu: Gpu,
    private readonly opts: { dir?: string; reps?: number; log?: (msg: string) => void } = {},
  ) {
    this.fileName = `autotune-${hashText(adapterIdentity(gpu.adapter, gpu.handle.binding.name))}.json`;
  }

  get file(): string {
    return join(this.opts.dir ?? cacheDir(), this.fileName);
  }

  /** Whether tuning is on (ALIGNX_AUTOTUNE is not 0). */
  get enabled(): boolean {
    return process.env.ALIGNX_AUTOTUNE !== "0";
  }

  private warn(msg: string): void {
    (this.opts.log ?? ((m: string) => console.warn(m)))(msg);
  }

  private load(): void {
    if (this.loaded) return;
    this.loaded = true;
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch {
      return; // no cache yet
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (e) {
      this.warn(`alignx: ignoring autotune cache ${this.file}: ${(e as Error).message}; it will be re-tuned and rewritten`);
      return;
    }
    const d = data as { format?: unknown; entries?: unknown };
    if (!d || d.format !== FORMAT || !d.entries || typeof d.entries !== "object") {
      this.warn(`alignx: ignoring autotune cache ${this.file}: not an ${FORMAT} file; it will be re-tuned and rewritten`);
      return;
    }
    for (const [k, v] of Object.entries(d.entries as Record<string, unknown>)) {
      if (validEntry(v)) this.entries.set(k, v);
      else this.warn(`alignx: ignoring autotune cache entry "${k}" in ${this.file}: malformed; it will be re-tuned`);
    }
  }

  private save(): void {
    const dir = this.opts.dir ?? cacheDir();
    const tmp = `${this.file}.tmp-${process.pid}`;
    try {
      mkdirSync(dir, { recursive: true });
      const a = this.gpu.adapter;
      const body = { format: FORMAT, adapter: { description: a.description, vendor: a.vendor, architecture: a.architecture, backend: a.backend }, entries: Object.fromEntries(this.entries) };
      writeFileSync(tmp, JSON.stringify(body, null, 1) + "\n");
      renameSync(tmp, this.file);
    } catch (e) {
      try {
        rmSync(tmp, { force: true });
      } catch {
        // nothing was written (e.g. the cache path's parent is a file)
      }
      this.warn(`alignx: could not write the autotune cache ${this.file}: ${(e as Error).message} (tuning is kept for this run only)`);
    }
  }

  /** The remembered result for `key` (from this run or the adapter's cache file), if any. */
  lookup(key: string): TuneResult | undefined {
    if (!this.enabled) return undefined;
    this.load();
    return this.entries.get(key);
  }

  /** The keys this tuner timed (rather than read from the cache), e.g. to say "tuned now" or "read from". */
  get timed(): ReadonlySet<string> {
    return this.timedKeys;
  }

  /** Every remembered result (loads the cache file first). */
  all(): ReadonlyMap<string, TuneResult> {
    this.load();
    return this.entries;
  }

  /**
   * The remembered result for `key`, or time `candidates` now, remember the fastest and write the cache.
   * Returns undefined when tuning is off or there is nothing to choose from.
   */
  async tune(key: string, candidates: readonly Candidate[]): Promise<TuneResult | undefined> {
    if (!this.enabled || candidates.length === 0) return undefined;
    this.load();
    const known = process.env.ALIGNX_AUTOTUNE === "force" ? undefined : this.entries.get(key);
    if (known && candidates.some((c) => c.name === known.choice)) return known;
    const gpu = this.gpu;
    const prof = gpu.queue.profiler;
    const wasOn = prof.active;
    const ts = gpu.profile(true);
    const ms: Record<string, number> = {};
    try {
      for (const c of candidates) {
        c.run();
        await gpu.sync();
        const samples: number[] = [];
        for (let r = 0; r < (this.opts.reps ?? 3); r++) {
          prof.reset();
          const t0 = performance.now();
          c.run();
          await gpu.sync();
          const host = performance.now() - t0;
          const gpuMs = ts ? prof.report().reduce((s, k) => s + k.ms, 0) : 0;
          samples.push(ts && gpuMs > 0 ? gpuMs : host);
        }
        ms[c.name] = median(samples);
      }
    } finally {
      prof.reset();
      gpu.profile(wasOn);
    }
    const choice = Object.entries(ms).sort((a, b) => a[1] - b[1])[0]![0];
    const result: TuneResult = { choice, ms, method: ts ? "gpu-timestamps" : "host", tunedAt: new Date().toISOString() };
    this.entries.set(key, result);
    this.timedKeys.add(key);
    this.save();
    return result;
  }
}
