/**
 * kernels/nan.wgsl, the WGSL library of NaN tests on the bits (`is_nan`, `is_finite`, `nonzero`) and of a max and
 * min that propagate NaN (`nan_max`, `nan_min`): a kernel that must keep a NaN as torch does appends it
 * (`defineKernel(file, src, [NAN])`); kernels/row_reduce.wgsl needs it, so ROW_REDUCE brings it along.
 */
import nanSrc from "../../kernels/nan.wgsl" with { type: "text" };
import { defineLibrary } from "./kernel.ts";

export const NAN = defineLibrary("kernels/nan.wgsl", nanSrc);
