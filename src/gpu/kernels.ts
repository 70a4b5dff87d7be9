// The runtime's own kernels (bandwidth copy/fill, the self-test matmul), imported as text so the
// compiled binary carries them.
import copySrc from "../../kernels/copy.wgsl" with { type: "text" };
import matmulSrc from "../../kernels/matmul.wgsl" with { type: "text" };
import { defineKernel } from "./kernel.ts";

export const COPY = defineKernel("kernels/copy.wgsl", copySrc);
export const MATMUL = defineKernel("kernels/matmul.wgsl", matmulSrc);
