/**
 * The one error type of the checkpoint I/O layer. Its message always starts with the file (or directory)
 * it is about, then says where (a byte offset, a tensor name, a config field) and what is wrong, so a
 * user can find the problem with `xxd -s OFFSET FILE` or a text editor. The same facts are fields too.
 */
export class CheckpointError extends Error {
  exitCode = 1;
  constructor(
    message: string,
    /** The file or directory the error is about. */
    readonly file: string,
    readonly where: { offset?: number; tensor?: string; field?: string } = {},
  ) {
    super(CheckpointError.format(message, file, where));
    this.name = "CheckpointError";
  }

  get offset(): number | undefined {
    return this.where.offset;
  }
  get tensor(): string | undefined {
    return this.where.tensor;
  }
  get field(): string | undefined {
    return this.where.field;
  }

  static format(message: string, file: string, where: { offset?: number; tensor?: string; field?: string }): string {
    const at: string[] = [];
    if (where.offset !== undefined) at.push(`byte ${where.offset}`);
    if (where.tensor !== undefined) at.push(`tensor ${JSON.stringify(where.tensor)}`);
    if (where.field !== undefined) at.push(`field ${JSON.stringify(where.field)}`);
    return `${file}${at.length ? ` (${at.join(", ")})` : ""}: ${message}`;
  }
}

/** `n` lines at most, then "... and K more": errors that list every problem stay readable. */
export function listLines(lines: readonly string[], max = 60): string {
  const shown = lines.slice(0, max).map((l) => `  ${l}`);
  if (lines.length > max) shown.push(`  ... and ${lines.length - max} more`);
  return shown.join("\n");
}
