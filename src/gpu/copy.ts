// The runtime's copy and fill kernels (kernels/copy.wgsl): Gpu.fill, the self-test's bandwidth figure and the
// bench's copy ceiling. Imported as text so the compiled binary carries them.
import copySrc from "../../kernels/copy.wgsl" with { type: "text" };
import { defineKernel } from "./kernel.ts";

export const COPY = defineKernel("kernels/copy.wgsl", copySrc);
