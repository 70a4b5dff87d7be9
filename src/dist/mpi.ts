/**
 * The MPI seam: the one module that knows which MPI library is in use (as src/gpu/binding.ts is for WebGPU).
 *
 * Ranks are started by an MPI launcher (`mpirun -np N alignx train ...`, Open MPI's or MPICH's, on one machine or
 * many); this module loads that MPI's C library through `bun:ffi`, at run time, and offers the few collectives
 * data-parallel training needs: `allReduce` (sum/mean/max/min, in place), `broadcast`, `barrier`, `finalize`.
 * Nothing is compiled: no C shim (Bun's TinyCC is not available inside `bun build --compile`), no mpi.h at build time.
 *
 * Launched or not. The launcher is recognised by its environment (Open MPI: OMPI_COMM_WORLD_SIZE; MPICH's hydra:
 * PMI_SIZE; a PMIx launcher such as srun: PMIX_RANK). Without it the process is a world of one: size 1, rank 0,
 * no library loaded (none needs to be installed), every collective a no-op (a mean of one is the value itself).
 * Under a launcher the library is required; when none loads, the error names the Debian package to install
 * (`openmpi-bin libopenmpi-dev` for Open MPI's mpirun, `mpich` for MPICH's).
 *
 * The handle table. The C API is the same in both implementations but the handles are not:
 *   Open MPI (libmpi.so.40)       MPI_Comm, MPI_Datatype, MPI_Op, MPI_Errhandler are pointers to predefined
 *                                 objects, i.e. the addresses of data symbols (`MPI_COMM_WORLD` is
 *                                 `&ompi_mpi_comm_world`, `MPI_FLOAT` is `&ompi_mpi_float`, `MPI_SUM` is
 *                                 `&ompi_mpi_op_sum`). bun:ffi resolves every name given to `dlopen` with `dlsym`,
 *                                 so each is declared as a zero-argument function that is never called, and its
 *                                 `.ptr` is the object's address. MPI_IN_PLACE is `(void*)1`.
 *   MPICH (libmpich.so.12,        handles are plain ints (`MPI_COMM_WORLD` = 0x44000000, `MPI_FLOAT` = 0x4c00040a,
 *   libmpi.so.12)                 `MPI_SUM` = 0x58000003, ...), passed as C ints. MPI_IN_PLACE is `(void*)-1`.
 * MPI_IN_PLACE travels as a 64-bit integer argument (a pointer-sized register on x86-64 and arm64), since -1 as an
 * address has no exact JavaScript number. `ALIGNX_MPI_LIB=/path/libmpi.so` forces a library (its flavour is
 * recognised by its symbols).
 *
 * Errors. MPI_COMM_WORLD's error handler is set to MPI_ERRORS_RETURN, so a failing call throws an MpiError with
 * MPI's own text. A rank that dies takes the job with it: the launcher kills the other ranks and names the dead
 * one. `abort(code)` (MPI_Abort) ends every rank, for a failure that only one rank sees mid-collective.
 */
import type { Library } from "bun:ffi";

/** bun:ffi, loaded only when an MPI library is (a plain process never loads it). */
const ffi = (): typeof import("bun:ffi") => require("bun:ffi") as typeof import("bun:ffi");
/** bun:ffi's C types, by the names it accepts. */
type CType = "ptr" | "i32" | "i64" | "void";

export type ReduceOp = "sum" | "mean" | "max" | "min";
type Numeric = Float32Array | Float64Array | Int32Array;

export class MpiError extends Error {
  override name = "MpiError";
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** What the environment says about the launcher; null when the process was not started by one. */
export interface Launch {
  /** The variable that gave it away, e.g. OMPI_COMM_WORLD_SIZE=2. */
  via: string;
  /** Which MPI's launcher: decides which library is tried first, and which package an error names. */
  flavor: FlavorName;
  size?: number;
  rank?: number;
  localRank?: number;
}

export type FlavorName = "Open MPI" | "MPICH";

const int = (v: string | undefined): number | undefined => (v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined);

/** Read the launcher's variables (Open MPI, MPICH/hydra, PMIx), or null for a plain process. */
export function detectLaunch(env: Record<string, string | undefined> = process.env): Launch | null {
  if (env.OMPI_COMM_WORLD_SIZE !== undefined)
    return {
      via: `OMPI_COMM_WORLD_SIZE=${env.OMPI_COMM_WORLD_SIZE}`,
      flavor: "Open MPI",
      size: int(env.OMPI_COMM_WORLD_SIZE),
      rank: int(env.OMPI_COMM_WORLD_RANK),
      localRank: int(env.OMPI_COMM_WORLD_LOCAL_RANK),
    };
  if (env.PMI_SIZE !== undefined)
    return { via: `PMI_SIZE=${env.PMI_SIZE}`, flavor: "MPICH", size: int(env.PMI_SIZE), rank: int(env.PMI_RANK), localRank: int(env.MPI_LOCALRANKID) };
  if (env.PMIX_RANK !== undefined)
    return { via: `PMIX_RANK=${env.PMIX_RANK}`, flavor: "Open MPI", rank: int(env.PMIX_RANK), localRank: int(env.SLURM_LOCALID ?? env.PMIX_LOCAL_RANK) };
  return null;
}

/** How one MPI implementation names its library and spells its handles. */
export interface Flavor {
  name: FlavorName;
  /** Sonames tried in order. */
  libraries: readonly string[];
  /** The Debian packages that install it (for the error when it is missing). */
  packages: string;
  /** The C type of a handle argument. */
  handle: "ptr" | "i32";
  /** MPI_IN_PLACE as a 64-bit integer. */
  inPlace: bigint;
  /** MPI_STATUS_IGNORE as a 64-bit integer. */
  statusIgnore: bigint;
  /** Is the library at this path this implementation? (an ALIGNX_MPI_LIB library; libmpi.so.12 was also Open MPI 1.10's name) */
  recognise(path: string): boolean;
  /** Extra names to resolve (Open MPI: the predefined objects' data symbols). */
  data: readonly string[];
  /** The handles, from the opened library. */
  handles(lib: Library<Record<string, never>>): Handles;
}

interface Handles {
  commWorld: number;
  errorsReturn: number;
  float: number;
  double: number;
  int: number;
  byte: number;
  ops: Record<Exclude<ReduceOp, "mean">, number>;
}

const OMPI_DATA = [
  "ompi_mpi_comm_world",
  "ompi_mpi_errors_return",
  "ompi_mpi_float",
  "ompi_mpi_double",
  "ompi_mpi_int",
  "ompi_mpi_byte",
  "ompi_mpi_op_sum",
  "ompi_mpi_op_max",
  "ompi_mpi_op_min",
] as const;

export const FLAVORS: Record<FlavorName, Flavor> = {
  "Open MPI": {
    name: "Open MPI",
    libraries: ["libmpi.so.40"],
    packages: "openmpi-bin libopenmpi-dev",
    handle: "ptr",
    inPlace: 1n,
    statusIgnore: 0n,
    recognise: (path) => hasSymbol(path, "ompi_mpi_comm_world"),
    data: OMPI_DATA,
    handles(lib) {
      const s = lib.symbols as unknown as Record<(typeof OMPI_DATA)[number], { ptr: number }>;
      const at = (n: (typeof OMPI_DATA)[number]) => {
        const p = s[n].ptr;
        if (!p) throw new MpiError(`Open MPI: the data symbol ${n} resolved to no address`);
        return p;
      };
      return {
        commWorld: at("ompi_mpi_comm_world"),
        errorsReturn: at("ompi_mpi_errors_return"),
        float: at("ompi_mpi_float"),
        double: at("ompi_mpi_double"),
        int: at("ompi_mpi_int"),
        byte: at("ompi_mpi_byte"),
        ops: { sum: at("ompi_mpi_op_sum"), max: at("ompi_mpi_op_max"), min: at("ompi_mpi_op_min") },
      };
    },
  },
  MPICH: {
    name: "MPICH",
    libraries: ["libmpich.so.12", "libmpi.so.12"],
    packages: "mpich",
    handle: "i32",
    inPlace: -1n,
    statusIgnore: 1n,
    recognise: (path) => hasSymbol(path, "MPI_Init") && !hasSymbol(path, "ompi_mpi_comm_world"),
    data: [],
    // mpi.h of MPICH 3 and 4 (and its ABI-compatible derivatives: Intel MPI, MVAPICH).
    handles: () => ({
      commWorld: 0x44000000,
      errorsReturn: 0x54000001,
      float: 0x4c00040a,
      double: 0x4c00080b,
      int: 0x4c000405,
      byte: 0x4c00010d,
      ops: { max: 0x58000001, min: 0x58000002, sum: 0x58000003 },
    }),
  },
};

/** The C functions used, with handle arguments typed per flavour (`H`). */
function functions(H: CType) {
  const [ptr, i32, i64] = ["ptr", "i32", "i64"] as const;
  return {
    MPI_Initialized: { args: [ptr], returns: i32 },
    MPI_Finalized: { args: [ptr], returns: i32 },
    MPI_Init: { args: [ptr, ptr], returns: i32 },
    MPI_Finalize: { args: [], returns: i32 },
    MPI_Abort: { args: [H, i32], returns: i32 },
    MPI_Comm_rank: { args: [H, ptr], returns: i32 },
    MPI_Comm_size: { args: [H, ptr], returns: i32 },
    MPI_Comm_set_errhandler: { args: [H, H], returns: i32 },
    MPI_Error_string: { args: [i32, ptr, ptr], returns: i32 },
    MPI_Barrier: { args: [H], returns: i32 },
    MPI_Ibarrier: { args: [H, ptr], returns: i32 },
    // status as a 64-bit integer: always MPI_STATUS_IGNORE here.
    MPI_Test: { args: [ptr, ptr, i64], returns: i32 },
    MPI_Bcast: { args: [ptr, i32, H, i32, H], returns: i32 },
    // sendbuf as a 64-bit integer: always MPI_IN_PLACE here.
    MPI_Allreduce: { args: [i64, ptr, i32, H, H, H], returns: i32 },
  } as const;
}

interface Calls {
  MPI_Initialized(flag: Int32Array): number;
  MPI_Finalized(flag: Int32Array): number;
  MPI_Init(argc: null, argv: null): number;
  MPI_Finalize(): number;
  MPI_Abort(comm: number, code: number): number;
  MPI_Comm_rank(comm: number, out: Int32Array): number;
  MPI_Comm_size(comm: number, out: Int32Array): number;
  MPI_Comm_set_errhandler(comm: number, h: number): number;
  MPI_Error_string(code: number, buf: Uint8Array, len: Int32Array): number;
  MPI_Barrier(comm: number): number;
  MPI_Ibarrier(comm: number, request: BigUint64Array): number;
  MPI_Test(request: BigUint64Array, flag: Int32Array, status: bigint): number;
  MPI_Bcast(buf: ArrayBufferView, count: number, type: number, root: number, comm: number): number;
  MPI_Allreduce(send: bigint, recv: ArrayBufferView, count: number, type: number, op: number, comm: number): number;
}

/** An opened MPI library: its flavour, the path it came from, its calls and handles. */
export interface MpiLibrary {
  flavor: Flavor;
  path: string;
  calls: Calls;
  handles: Handles;
  close(): void;
}

/** Open one library as `flavor` (throws when it is missing or lacks a symbol). */
function openAs(path: string, flavor: Flavor): MpiLibrary {
  const defs: Record<string, { args: readonly CType[]; returns: CType }> = { ...functions(flavor.handle) };
  for (const d of flavor.data) defs[d] = { args: [], returns: "void" };
  const lib = ffi().dlopen(path, defs as never) as unknown as Library<Record<string, never>>;
  try {
    return { flavor, path, calls: lib.symbols as unknown as Calls, handles: flavor.handles(lib), close: () => lib.close() };
  } catch (e) {
    lib.close();
    throw e;
  }
}

/** Does the library at `path` export `symbol`? (dlopen of one zero-argument name.) */
function hasSymbol(path: string, symbol: string): boolean {
  try {
    ffi().dlopen(path, { [symbol]: { args: [], returns: "void" } }).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Load the MPI library of this launch: ALIGNX_MPI_LIB when set, else the launcher's flavour first, then the other.
 * Throws an MpiError (exit 2) naming what was tried and the package to install.
 */
export function loadMpi(launch: Pick<Launch, "flavor" | "via"> | null, env: Record<string, string | undefined> = process.env, flavors: Record<FlavorName, Flavor> = FLAVORS): MpiLibrary {
  const forced = env.ALIGNX_MPI_LIB;
  if (forced) {
    const flavor = (Object.values(flavors) as Flavor[]).find((f) => f.recognise(forced));
    if (!flavor) throw new MpiError(`ALIGNX_MPI_LIB=${forced}: not an Open MPI or MPICH library (or it does not load)`, 2);
    return openAs(forced, flavor);
  }
  const first = launch?.flavor ?? "Open MPI";
  const order = [flavors[first], ...(Object.values(flavors) as Flavor[]).filter((f) => f.name !== first)];
  const tried: string[] = [];
  for (const flavor of order)
    for (const lib of flavor.libraries) {
      try {
        if (lib === "libmpi.so.12" && !flavor.recognise(lib)) {
          tried.push(`${lib} (missing, or not MPICH)`);
          continue;
        }
        return openAs(lib, flavor);
      } catch (e) {
        tried.push(`${lib} (${firstLine((e as Error).message)})`);
      }
    }
  const pkg = flavors[first].packages;
  throw new MpiError(
    `launched by an MPI launcher (${launch?.via ?? "?"}) but no MPI library loads (tried ${tried.join(", ")}); ` +
      `install ${first}'s: apt-get install ${pkg} (the library must be the launcher's MPI; ALIGNX_MPI_LIB=/path/libmpi.so picks one)`,
    2,
  );
}

const firstLine = (s: string) => s.split("\n")[0]!.slice(0, 160);

/** The collectives of a set of ranks (MPI_COMM_WORLD, or the world of one). */
export interface Comm {
  readonly size: number;
  readonly rank: number;
  /** The rank among the ranks on this machine (chooses the adapter). */
  readonly localRank: number;
  /** Combine `buf` over every rank, in place (mean: the sum divided by the size; floats only). */
  allReduce(buf: Numeric, op?: ReduceOp): void;
  /** All-reduce f16 values (widened to f32 for the reduction, rounded back once). */
  allReduceF16(buf: Float16Array, op?: ReduceOp): void;
  /** Copy `buf` of rank `root` into every rank's `buf` (same length everywhere). */
  broadcast(buf: ArrayBufferView, root?: number): void;
  barrier(): void;
  /**
   * A barrier that waits without spinning a core (MPI_Ibarrier, then MPI_Test with growing sleeps of at most
   * 5 ms): for waits that may be long (another rank tuning kernels or writing a checkpoint), where a blocking
   * MPI call would busy-poll a core the working rank may need (lavapipe computes on the CPU).
   */
  barrierAsync(): Promise<void>;
  /** Shut MPI down (collective; only on a normal end). Later collectives throw. */
  finalize(): void;
  /** End every rank now (MPI_Abort); for a failure one rank sees while others wait in a collective. */
  abort(code: number): never;
  /** Which MPI (null: a world of one, no library). */
  readonly library: { flavor: FlavorName; path: string } | null;
}

/** The world of one: no library, every collective a no-op. */
export class LocalComm implements Comm {
  readonly size = 1;
  readonly rank = 0;
  readonly localRank = 0;
  readonly library = null;
  allReduce(buf: Numeric, op: ReduceOp = "sum"): void {
    if (op === "mean" && buf instanceof Int32Array) throw new MpiError("allReduce: mean of integers");
  }
  allReduceF16(_buf: Float16Array, _op?: ReduceOp): void {}
  broadcast(_buf: ArrayBufferView, root = 0): void {
    if (root !== 0) throw new MpiError(`broadcast: root ${root} is not a rank of a world of 1`);
  }
  barrier(): void {}
  async barrierAsync(): Promise<void> {}
  finalize(): void {}
  abort(code: number): never {
    process.exit(code);
  }
}

/** Most elements per MPI call (its count is a C int). */
const MAX_COUNT = 1 << 30;

/** MPI_COMM_WORLD of an initialised MPI library. */
export class MpiComm implements Comm {
  readonly size: number;
  readonly rank: number;
  readonly localRank: number;
  private finalized = false;
  private readonly c: Calls;
  private readonly h: Handles;

  constructor(
    private readonly lib: MpiLibrary,
    launch: Launch | null,
  ) {
    this.c = lib.calls;
    this.h = lib.handles;
    const flag = new Int32Array(1);
    this.check(this.c.MPI_Initialized(flag), "MPI_Initialized");
    if (!flag[0]) this.check(this.c.MPI_Init(null, null), "MPI_Init");
    this.check(this.c.MPI_Comm_set_errhandler(this.h.commWorld, this.h.errorsReturn), "MPI_Comm_set_errhandler");
    const out = new Int32Array(1);
    this.check(this.c.MPI_Comm_size(this.h.commWorld, out), "MPI_Comm_size");
    this.size = out[0]!;
    this.check(this.c.MPI_Comm_rank(this.h.commWorld, out), "MPI_Comm_rank");
    this.rank = out[0]!;
    this.localRank = launch?.localRank ?? (this.size === 1 ? 0 : this.rank);
  }

  get library(): { flavor: FlavorName; path: string } {
    return { flavor: this.lib.flavor.name, path: this.lib.path };
  }

  allReduce(buf: Numeric, op: ReduceOp = "sum"): void {
    const type = buf instanceof Float32Array ? this.h.float : buf instanceof Float64Array ? this.h.double : buf instanceof Int32Array ? this.h.int : undefined;
    if (type === undefined) throw new MpiError(`allReduce: ${(buf as object)?.constructor?.name} is not Float32Array, Float64Array or Int32Array`);
    if (op === "mean" && buf instanceof Int32Array) throw new MpiError("allReduce: mean of integers");
    const mpiOp = this.h.ops[op === "mean" ? "sum" : op];
    if (mpiOp === undefined) throw new MpiError(`allReduce: unknown op ${JSON.stringify(op)} (sum, mean, max, min)`);
    this.live("allReduce");
    for (let at = 0; at < buf.length; at += MAX_COUNT) {
      const part = buf.subarray(at, Math.min(buf.length, at + MAX_COUNT));
      this.check(this.c.MPI_Allreduce(this.lib.flavor.inPlace, part, part.length, type, mpiOp, this.h.commWorld), "MPI_Allreduce");
    }
    if (op === "mean" && this.size > 1) {
      const n = this.size;
      for (let i = 0; i < buf.length; i++) buf[i] = buf[i]! / n;
    }
  }

  allReduceF16(buf: Float16Array, op: ReduceOp = "sum"): void {
    const wide = Float32Array.from(buf);
    this.allReduce(wide, op);
    buf.set(wide);
  }

  broadcast(buf: ArrayBufferView, root = 0): void {
    if (!Number.isInteger(root) || root < 0 || root >= this.size) throw new MpiError(`broadcast: root ${root} is not a rank (0..${this.size - 1})`);
    this.live("broadcast");
    const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    for (let at = 0; at < bytes.length; at += MAX_COUNT) {
      const part = bytes.subarray(at, Math.min(bytes.length, at + MAX_COUNT));
      this.check(this.c.MPI_Bcast(part, part.length, this.h.byte, root, this.h.commWorld), "MPI_Bcast");
    }
  }

  barrier(): void {
    this.live("barrier");
    this.check(this.c.MPI_Barrier(this.h.commWorld), "MPI_Barrier");
  }

  async barrierAsync(): Promise<void> {
    this.live("barrier");
    const request = new BigUint64Array(1); // MPI_Request: a pointer (Open MPI) or an int (MPICH)
    const flag = new Int32Array(1);
    this.check(this.c.MPI_Ibarrier(this.h.commWorld, request), "MPI_Ibarrier");
    for (let ms = 0.25; ; ms = Math.min(5, ms * 2)) {
      this.check(this.c.MPI_Test(request, flag, this.lib.flavor.statusIgnore), "MPI_Test");
      if (flag[0]) return;
      await new Promise((r) => setTimeout(r, ms));
    }
  }

  finalize(): void {
    if (this.finalized) return;
    this.finalized = true;
    const flag = new Int32Array(1);
    this.c.MPI_Finalized(flag);
    if (!flag[0]) this.check(this.c.MPI_Finalize(), "MPI_Finalize");
  }

  abort(code: number): never {
    if (!this.finalized) this.c.MPI_Abort(this.h.commWorld, code);
    process.exit(code);
  }

  private live(what: string): void {
    if (this.finalized) throw new MpiError(`${what}: MPI was finalized`);
  }

  private check(rc: number, what: string): void {
    if (rc === 0) return;
    const buf = new Uint8Array(512);
    const len = new Int32Array(1);
    let text = "";
    if (what !== "MPI_Error_string" && this.c.MPI_Error_string(rc, buf, len) === 0) text = new TextDecoder().decode(buf.subarray(0, Math.max(0, Math.min(len[0]!, buf.length))));
    throw new MpiError(`${what} failed on rank ${this.rank ?? "?"}: ${text || `error ${rc}`}`);
  }
}

let current: Comm | undefined;

/**
 * The world of this process (initialised on first use): MPI_COMM_WORLD under a launcher, else the world of one.
 * Throws an MpiError (exit 2) when launched but no MPI library loads.
 */
export function worldComm(): Comm {
  if (current) return current;
  const launch = detectLaunch();
  if (!launch) return (current = new LocalComm());
  const comm = new MpiComm(loadMpi(launch), launch);
  current = comm;
  // A normal exit of a rank that did not finalize would be reported by the launcher as improper.
  process.once("exit", (code) => {
    if (code === 0) {
      try {
        comm.finalize();
      } catch {
        // nothing left to do at exit
      }
    }
  });
  return comm;
}

/** True when an MPI launcher started this process (no library is loaded to answer). */
export function launched(): boolean {
  return detectLaunch() !== null;
}

/** `world.size`, `world.rank`, ...: the collectives of `worldComm()`, initialised on first use. */
export const world: Comm = {
  get size() {
    return worldComm().size;
  },
  get rank() {
    return worldComm().rank;
  },
  get localRank() {
    return worldComm().localRank;
  },
  get library() {
    return worldComm().library;
  },
  allReduce: (buf, op) => worldComm().allReduce(buf, op),
  allReduceF16: (buf, op) => worldComm().allReduceF16(buf, op),
  broadcast: (buf, root) => worldComm().broadcast(buf, root),
  barrier: () => worldComm().barrier(),
  barrierAsync: () => worldComm().barrierAsync(),
  finalize: () => current?.finalize(),
  abort: (code) => worldComm().abort(code),
};

export const allReduce: Comm["allReduce"] = (buf, op) => world.allReduce(buf, op);
export const broadcast: Comm["broadcast"] = (buf, root) => world.broadcast(buf, root);
export const barrier = (): void => world.barrier();
export const finalize = (): void => world.finalize();

/** The communicator whose ranks last agreed, through `firstFailure`, that they all stop (null: none did). */
let stopping: Comm | null = null;

/**
 * The communicator on which every rank knows this process is stopping on a failure they agreed on
 * (`firstFailure` returned one), or null. Its ranks can meet once more before they exit (see src/cli/main.ts):
 * a launcher ends the whole job at the first rank that exits non-zero, which could cut the others off before
 * they say why.
 */
export function agreedToStop(): Comm | null {
  return stopping;
}

/**
 * Collective: every rank passes its own failure (or null); when any rank failed, every rank gets the failure of
 * the lowest failing rank (its message and exit code), so all stop with the same words. Null when none failed.
 */
export function firstFailure(comm: Comm, own: { message: string; exitCode: number } | null): { rank: number; message: string; exitCode: number } | null {
  if (comm.size === 1) return own && { rank: 0, ...own };
  const lowest = Int32Array.of(own ? comm.rank : comm.size);
  comm.allReduce(lowest, "min");
  const r = lowest[0]!;
  if (r === comm.size) return null;
  const text = new TextEncoder().encode(r === comm.rank ? own!.message : "");
  const head = Int32Array.of(text.length, r === comm.rank ? own!.exitCode : 0);
  comm.broadcast(head, r);
  const body = r === comm.rank ? text : new Uint8Array(head[0]!);
  comm.broadcast(body, r);
  stopping = comm;
  return { rank: r, message: new TextDecoder().decode(body), exitCode: head[1]! };
}
