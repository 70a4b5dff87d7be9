// The Dawn binding keeps what it hands to native code alive (patches/bun-webgpu@0.1.7.patch). bun-webgpu 0.1.7
// packs each string as `ptr(encoder.encode(s))` and keeps only the address: a garbage collection between the
// packing and the native call freed the bytes, and Dawn read freed memory — a shader whose first 8 bytes were NUL
// ("null character found", seen once in a CI run as a failed AdamW kernel), and likewise entry points and labels.
// Here a collection is forced inside every string packing (the bundle's TextEncoder.encode), so a shader, an
// entry point or a label still read from freed bytes fails every time (50 of 50 shaders without the patch).
import { afterEach, expect, test } from "bun:test";
import { getGpu } from "../helpers.ts";

const encode = TextEncoder.prototype.encode;
afterEach(() => {
  TextEncoder.prototype.encode = encode;
});

/** During `fn`, every TextEncoder.encode first runs a full collection and reuses freed memory with 0x41 bytes. */
function collectingInsideEveryEncode<T>(fn: () => T): T {
  TextEncoder.prototype.encode = function (this: TextEncoder, s?: string) {
    Bun.gc(true);
    const reuse: Uint8Array[] = [];
    for (let j = 0; j < 20; j++) reuse.push(new Uint8Array(16_000).fill(0x41));
    return encode.call(this, s);
  };
  try {
    return fn();
  } finally {
    TextEncoder.prototype.encode = encode;
  }
}

test("shader code, entry points and labels survive a collection between packing and the native call", async () => {
  const gpu = await getGpu();
  const device = gpu.device;
  let bad = 0;
  for (let i = 0; i < 20; i++) {
    const code = `// shader ${i}\n@group(0) @binding(0) var<storage, read_write> out: array<u32>;\n@compute @workgroup_size(1) fn entry_${i}() { out[0] = ${i}u; }\n${"// padding\n".repeat(500)}`;
    device.pushErrorScope("validation");
    collectingInsideEveryEncode(() => {
      const module = device.createShaderModule({ code, label: `lifetime-${i}` });
      device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: `entry_${i}` }, label: `lifetime-pipeline-${i}` });
    });
    const err = await device.popErrorScope();
    if (err) {
      bad++;
      if (bad === 1) console.log(`shader ${i}: ${err.message.slice(0, 300).replace(/\0/g, "\\0")}`);
    }
  }
  expect(bad).toBe(0);
}, 60_000);
