// Shape helpers on the host: broadcasting, coalescing (what lets rank-6 kernels serve any broadcast), reshape
// inference, axis normalization.
import { describe, expect, test } from "bun:test";
import { broadcastShapes, broadcastStrides, coalesce, inferShape, normalizeAxis } from "../../src/tensor/index.ts";

describe("shape helpers", () => {
  test("broadcastShapes follows NumPy and names the op and shapes on failure", () => {
    expect(broadcastShapes("add", [3, 1, 5], [4, 1])).toEqual([3, 4, 5]);
    expect(broadcastShapes("add", [], [2, 3])).toEqual([2, 3]);
    expect(broadcastShapes("add", [0, 1], [1, 7])).toEqual([0, 7]);
    expect(() => broadcastShapes("mul", [2, 3], [2])).toThrow("mul: shapes [2, 3] and [2] cannot be broadcast together (dimension -1: 3 vs 2)");
  });

  test("coalesce merges what every operand walks contiguously, innermost first", () => {
    const out = [3, 4, 5];
    const c = coalesce(out, [broadcastStrides([3, 4, 5], out), broadcastStrides([4, 1], out)]);
    expect(c).toEqual({ sizes: [5, 4, 3], strides: [[1, 5, 20], [0, 1, 0]] });
    const o2 = [6, 5];
    expect(coalesce(o2, [broadcastStrides([6, 5], o2), broadcastStrides([6, 5], o2)])).toEqual({ sizes: [30], strides: [[1], [1]] });
    expect(coalesce(o2, [broadcastStrides([6, 5], o2), broadcastStrides([5], o2)])).toEqual({ sizes: [5, 6], strides: [[1, 5], [1, 0]] });
    const o3 = [2, 3, 4, 5];
    // b broadcast over the two outer dimensions: they merge into one
    expect(coalesce(o3, [broadcastStrides(o3, o3), broadcastStrides([4, 5], o3)])).toEqual({ sizes: [20, 6], strides: [[1, 20], [1, 0]] });
    expect(coalesce([1, 1], [[0, 0]])).toEqual({ sizes: [1], strides: [[0]] });
  });

  test("inferShape and normalizeAxis", () => {
    expect(inferShape("reshape", [2, 3, 4], [-1, 4])).toEqual([6, 4]);
    expect(inferShape("reshape", [0, 3], [-1, 3])).toEqual([0, 3]);
    expect(() => inferShape("reshape", [2, 3], [5, -1])).toThrow("reshape: cannot reshape [2, 3] (6 elements) into [5, -1]");
    expect(normalizeAxis("sum", -1, [2, 3])).toBe(1);
    expect(() => normalizeAxis("sum", 2, [2, 3])).toThrow("sum: axis 2 is out of range");
  });
});
