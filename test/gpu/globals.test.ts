// The user-script globals' getCompilationInfo() messages from Dawn's WGSL error text (no device needed; the
// device path is test/cli/cli.test.ts's compilation_info.ts fixture), and the parse kernel.ts shares.
import { describe, expect, test } from "bun:test";
import { wgslDiagnostics } from "../../src/gpu/errors.ts";
import { compilationInfo } from "../../src/gpu/globals.ts";

const DAWN =
  "Error while parsing WGSL: :3:16 error: cannot convert value of type 'abstract-float' to type 'u32'\n" +
  "  let x: u32 = 1.5;\n" +
  "               ^^^\n\n" +
  ":1:1 note: while analyzing entry point\n\n" +
  " - While calling [Device].CreateShaderModule([ShaderModuleDescriptor]).\n";

describe("getCompilationInfo for user scripts", () => {
  test("Dawn's text → line, column, kind, text and the marked length", () => {
    expect(wgslDiagnostics(DAWN)).toEqual([
      { line: 3, column: 16, type: "error", text: "cannot convert value of type 'abstract-float' to type 'u32'", length: 3 },
      { line: 1, column: 1, type: "info", text: "while analyzing entry point", length: 0 },
    ]);
    expect(wgslDiagnostics("[Invalid ShaderModule] is invalid.")).toEqual([]);
  });

  test("messages with offsets into the code; none when it compiled; an unlocated error at 0:0", () => {
    const code = "@compute @workgroup_size(1)\nfn main() {\n  let x: u32 = 1.5;\n}\n";
    const info = compilationInfo(code, DAWN);
    const [m] = info.messages;
    expect({ ...m }).toEqual({ __brand: "GPUCompilationMessage", message: "cannot convert value of type 'abstract-float' to type 'u32'", type: "error", lineNum: 3, linePos: 16, offset: 55, length: 3 });
    expect(code.slice(m!.offset, m!.offset + m!.length)).toBe("1.5");
    expect(info.messages.map((x) => x.type)).toEqual(["error", "info"]);
    expect(compilationInfo(code, undefined).messages).toEqual([]);
    const lost = compilationInfo(code, "Device is lost\nmore");
    expect(lost.messages.map((x) => [x.type, x.lineNum, x.linePos, x.offset, x.length, x.message])).toEqual([["error", 0, 0, 0, 0, "Device is lost"]]);
    expect(Object.isFrozen(info.messages)).toBe(true);
  });
});
