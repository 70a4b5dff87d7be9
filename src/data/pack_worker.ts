/**
 * A tokenizing worker of `alignx pack` (a Bun Worker; also an entrypoint of the compiled binary, see the
 * `build` script). Messages in: { init: tokenizerPath } once, then ChunkRequests. Out: { ready } or
 * ChunkResults (buffers transferred), or { error } with the message.
 */
import { loadTokenizer } from "./tokenizer.ts";
import { runChunk, type ChunkRequest } from "./pack_jobs.ts";
import type { HfTokenizer } from "./tokenizer.ts";

declare const self: Worker;
let tok: HfTokenizer | null = null;

self.onmessage = async (ev: MessageEvent) => {
  const msg = ev.data as { init?: string } & Partial<ChunkRequest>;
  try {
    if (msg.init !== undefined) {
      tok = await loadTokenizer(msg.init);
      self.postMessage({ ready: true, hash: tok.hash });
      return;
    }
    if (!tok) throw new Error("pack worker: a chunk came before init");
    const r = runChunk(tok, msg as ChunkRequest);
    self.postMessage(r, { transfer: [r.ids.buffer, r.spans.buffer, r.lengths.buffer, r.promptLens.buffer, r.hasSpans.buffer] as ArrayBuffer[] });
  } catch (e) {
    self.postMessage({ error: e instanceof Error ? e.message : String(e), id: msg.id });
  }
};
