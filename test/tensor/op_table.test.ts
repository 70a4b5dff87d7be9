// The op table: every Tensor method is the op function of the same name (a wiring check; the ops
// themselves are tested in their family's file).
import { describe, expect, test } from "bun:test";
import * as T from "../../src/tensor/index.ts";
import { getGpu } from "./helpers.ts";

describe("op table", () => {
  test("methods call the op of the same name", async () => {
    const gpu = await getGpu();
    const x = T.Tensor.fromArray(gpu, [0.5, -1.25, 2, 3.5, -0.75, 1], [2, 3]);
    const cases: [string, (t: T.Tensor) => T.Tensor, (t: T.Tensor) => T.Tensor][] = [
      ["softmax", (t) => t.softmax(), T.softmax],
      ["logSoftmax", (t) => t.logSoftmax(), T.logSoftmax],
      ["transpose", (t) => t.transpose(0, 1), (t) => T.transpose(t, 0, 1)],
      ["permute", (t) => t.permute([1, 0]), (t) => T.permute(t, [1, 0])],
      ["slice", (t) => t.slice(1, 1, 3), (t) => T.slice(t, 1, 1, 3)],
      ["expand", (t) => t.reshape(1, 2, 3).expand([2, 2, 3]), (t) => T.expand(t.reshape(1, 2, 3), [2, 2, 3])],
      ["clamp", (t) => t.clamp(-1, 1), (t) => T.clamp(t, -1, 1)],
      ["exp", (t) => t.exp(), T.exp],
      ["sum", (t) => t.sum(1), (t) => T.sum(t, 1)],
    ];
    for (const [name, method, fn] of cases) {
      const a = method(x);
      const b = fn(x);
      expect(a.shape, name).toEqual(b.shape);
      expect(Array.from(await a.toArray()), name).toEqual(Array.from(await b.toArray()));
      a.release();
      b.release();
    }
    // Not a constant: the methods really compute (softmax rows sum to 1).
    const s = await x.softmax().sum(1).toArray();
    for (const v of s) expect(v).toBeCloseTo(1, 6);
    x.release();
  });
});
