/**
 * The unit of work of `alignx pack`: a job is the text of one example to be (a translation, an instruction, a
 * document), a chunk is a list of jobs, and runChunk tokenizes a chunk into the records' ids and spans. The
 * packer runs chunks in worker threads (pack_worker.ts) or in its own thread (workers: 0) through this one
 * function, and writes the results in chunk order, so the shards are the same bytes whatever the worker count.
 * Results travel as one flat Uint32Array of ids and one Uint8Array of spans per chunk (transferred, not copied).
 */
import { buildInstruction, buildTranslation, documentIds, type Built } from "./examples.ts";
import type { SftTokenizer } from "./prompt.ts";

export type Job =
  | { kind: "translation"; srcLang: string; tgtLang: string; src: string; tgt: string }
  | { kind: "instruction"; instruction: string; input: string; output: string; lang: string | null }
  | { kind: "document"; text: string; lang: string | null };

export interface ChunkRequest {
  id: number;
  jobs: Job[];
  cutoff: number;
}

/** Per job: its length in ids (0 when dropped), prompt length, whether it has spans, and a drop reason. */
export interface ChunkResult {
  id: number;
  ids: Uint32Array;
  spans: Uint8Array;
  lengths: Int32Array;
  promptLens: Int32Array;
  hasSpans: Uint8Array;
  /** Per job: "" when kept, else the reason (Built's). */
  dropped: string[];
}

/** UTF-8 bytes of a job's text (for throughput figures). */
export function jobBytes(j: Job): number {
  const n = (s: string) => Buffer.byteLength(s);
  return j.kind === "translation" ? n(j.src) + n(j.tgt) : j.kind === "instruction" ? n(j.instruction) + n(j.input) + n(j.output) : n(j.text);
}

function build(tok: SftTokenizer, j: Job, cutoff: number): Built {
  if (j.kind === "translation") return buildTranslation(tok, j, cutoff);
  if (j.kind === "instruction") return buildInstruction(tok, j, cutoff);
  return { ok: true, ids: documentIds(tok, j.text), spans: null, promptLen: 0, task: "pretrain" };
}

export function runChunk(tok: SftTokenizer, req: ChunkRequest): ChunkResult {
  const n = req.jobs.length;
  const built = req.jobs.map((j) => build(tok, j, req.cutoff));
  let total = 0;
  for (const b of built) if (b.ok) total += b.ids.length;
  const ids = new Uint32Array(total);
  const spans = new Uint8Array(total);
  const lengths = new Int32Array(n), promptLens = new Int32Array(n), hasSpans = new Uint8Array(n);
  const dropped: string[] = [];
  let at = 0;
  built.forEach((b, i) => {
    if (!b.ok) {
      dropped.push(b.reason);
      return;
    }
    dropped.push("");
    ids.set(b.ids, at);
    if (b.spans) spans.set(b.spans, at);
    lengths[i] = b.ids.length;
    promptLens[i] = b.promptLen;
    hasSpans[i] = b.spans ? 1 : 0;
    at += b.ids.length;
  });
  return { id: req.id, ids, spans, lengths, promptLens, hasSpans, dropped };
}
