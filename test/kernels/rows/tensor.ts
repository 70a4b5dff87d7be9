// fillWord, copyBytes and accumulate (src/kernels/tensor.ts) against test/reference/tensor.ts: fills of the whole
// pooled buffer (an f32, a pair of f16 NaNs, an integer word) over several size classes; copies of part of a
// buffer (the words past `bytes` keep their poison); the f32 accumulation on f32 units (one element, partial
// workgroups) and vec4 units, exact (a correctly rounded f32 add), on a 2-D grid (policy grid.maxX 2), and with NaN.
// (The f16 accumulation is a cast row: src/kernels/cast.ts accumulateF16.)
import type { PartialPolicy } from "../../../src/gpu/policy.ts";
import { accumulate, copyBytes, fillWord } from "../../../src/kernels/tensor.ts";
import * as R from "../../reference/tensor.ts";
import { uniform } from "../../tensor/helpers.ts";
import type { LauncherRow } from "../harness.ts";

const GRID: PartialPolicy = { grid: { maxX: 2 } };
const EXACT = { rtol: 0, atol: 0 };
const words = (f: Float32Array) => new Uint32Array(f.buffer, f.byteOffset, f.length);
const hex = (w: number) => `0x${w.toString(16).padStart(8, "0")}`;

function fillRow(n: number, word: number): LauncherRow {
  return {
    family: "tensor",
    name: `tensor fillWord ${hex(word)} n=${n}`,
    async run(gpu, io) {
      const dst = io.output(n);
      const all = dst.size / 4; // the whole class size
      const before = words(await io.read(dst, all));
      fillWord(gpu, { dst }, { word });
      return [{ what: "dst", got: words(await io.read(dst, all)), ref: R.fillWord({ dst: before }, { word }).dst, opts: EXACT }];
    },
  };
}

function copyRow(n: number, bytes: number): LauncherRow {
  return {
    family: "tensor",
    name: `tensor copyBytes ${bytes} bytes of ${n} words`,
    async run(gpu, io, r) {
      const src = Uint32Array.from({ length: n }, () => Math.floor(r() * 2 ** 32));
      const dst = io.output(n);
      const before = words(await io.read(dst, n));
      copyBytes(gpu, { src: io.input(src), dst }, { bytes });
      return [{ what: "dst", got: words(await io.read(dst, n)), ref: R.copyBytes({ src, dst: before }, { bytes }).dst, opts: EXACT }];
    },
  };
}

/** nan: a NaN in src (element 1) and in dst (the last): NaN where either is. */
function accumulateRow(n: number, variant?: PartialPolicy, nan = false): LauncherRow {
  return {
    family: "tensor",
    name: `tensor accumulate n=${n}${variant ? " grid.maxX=2" : ""}${nan ? " with NaN" : ""}`,
    variant,
    async run(gpu, io, r) {
      const S = uniform(r, n, -4, 4);
      const D = uniform(r, n, -4, 4);
      if (nan) (S[1] = NaN), (D[n - 1] = NaN);
      const dst = io.input(D);
      accumulate(gpu, { src: io.input(S), dst }, { n });
      return [{ what: "dst", got: await io.read(dst, n), ref: Float32Array.from(R.accumulate({ src: S, dst: D }, { n }).dst), opts: EXACT }];
    },
  };
}

export const rows: LauncherRow[] = [
  ...[1, 37, 1000].flatMap((n) => [0x3f800000, 0x7e007e00, 0xdeadbeef].map((w) => fillRow(n, w))),
  copyRow(1, 4),
  copyRow(37, 4 * 37),
  copyRow(1000, 4 * 613),
  copyRow(300, 0),
  ...[1, 301, 300].map((n) => accumulateRow(n)),
  accumulateRow(1101, GRID), // f32 units: 5 workgroups
  accumulateRow(4100, GRID), // vec4 units: 1025 vec4s, 5 workgroups
  accumulateRow(301, undefined, true), // NaN propagation, f32 and vec4 units
  accumulateRow(300, undefined, true),
];
