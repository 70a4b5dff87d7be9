// Shared by the checkpoint I/O tests.
import { CheckpointError } from "../../src/io/index.ts";

/** Await `p` and return the CheckpointError it rejects with; anything else (success included) fails. */
export async function expectError(p: Promise<unknown>): Promise<CheckpointError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof CheckpointError) return e;
    throw new Error(`expected a CheckpointError, got ${e}`);
  }
  throw new Error("expected a CheckpointError, got success");
}
