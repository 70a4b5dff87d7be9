// The bench's stage-1 training row (bench/suites/train.ts trainOursStage1, issue 11 item 8) is not broken: on the
// tiny-64 config, one warm-up and one timed step of each objective; the stage-1 loss at init is finite, the
// weighted sum of its terms and above the NTP row's loss at init (same model, same ids: its L_NTP term is that
// loss); the batch has the documented spans and languages; stage1Check refuses a broken row; and the PyTorch
// peer's `--stage 1` reports the same structure (when a python3 with torch is there). MFU's parameter count leaves
// out an untied input embedding (a lookup, not a product).
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { matmulParams, overheadPct, peerScript, stage1Batch, stage1Check, stage1Rows, torchPython, trainConfigs, trainOurs, trainOursStage1 } from "../../bench/suites/train.ts";
import { getGpu } from "../helpers.ts";

const tiny64 = trainConfigs(false, true).find((c) => c.name === "tiny-64")!;

describe("bench train-stage1", () => {
  test("MFU counts the parameters of matrix products: an untied input embedding is left out, a tied one kept", () => {
    expect(matmulParams(tiny64, 220480)).toBe(220480 - 1000 * 64);
    const tied = { ...tiny64, hf: { ...tiny64.hf, tie_word_embeddings: true } };
    expect(matmulParams(tied, 156480)).toBe(156480);
  });

  test("the synthetic batch: B >= 2 rows, source [4, T/2), target [T/2 + 2, T - 2), mixed languages", () => {
    const b = stage1Batch({ ...tiny64, batch: 1 });
    expect(b.inputIds.length).toBe(2);
    expect(stage1Rows(tiny64)).toBe(2);
    const row = b.srcTgtIndex[0]!;
    expect(row.length).toBe(64);
    expect(row.indexOf(1)).toBe(4);
    expect(row.lastIndexOf(1)).toBe(31);
    expect(row.indexOf(2)).toBe(34);
    expect(row.lastIndexOf(2)).toBe(61);
    expect(Array.from(b.srcLang)).toEqual([0, 1]);
    expect(Array.from(b.tgtLang)).toEqual([1, 2]);
    expect(overheadPct({ tokens_per_step: 64, step_ms: 10 }, { tokens_per_step: 128, step_ms: 30 })).toBeCloseTo(50, 10);
  });

  test(
    "tiny-64: the stage-1 loss at init is finite, the weighted sum of its terms and above the NTP loss at init",
    async () => {
      const gpu = await getGpu();
      const ntp = await trainOurs(gpu, tiny64, 1);
      const s1 = await trainOursStage1(gpu, tiny64, 1, ntp);
      expect(ntp.name).toBe("train-tiny-64");
      expect(s1.name).toBe("train-stage1-tiny-64");
      expect(s1.objective).toBe("stage1");
      expect(stage1Check(ntp, s1)).toBeNull();
      expect(Number.isFinite(s1.loss_init)).toBe(true);
      expect(s1.loss_init!).toBeGreaterThan(ntp.loss_init!);
      expect(s1.terms_init!.ntp).toBeCloseTo(ntp.loss_init!, 4);
      expect(s1.stage1).toEqual({ align_layer: 1, contrastive_lambda: 0.3, contrastive_temperature: 0.1, language_matching_lambda: 0.4, language_matching_intermediate_size: 128 });
      // The classifier: gate and up [128, 2·64], down [2, 128].
      expect(s1.params).toBe(ntp.params + 2 * 128 * 128 + 2 * 128);
      expect(s1.dispatches_per_step).toBeGreaterThan(ntp.dispatches_per_step);
      expect(Number.isFinite(s1.overhead_pct)).toBe(true);
      // A broken row is refused, naming what is wrong.
      expect(stage1Check(ntp, { ...s1, loss_init: Number.NaN })).toContain("not finite");
      expect(stage1Check(ntp, { ...s1, loss_init: ntp.loss_init! - 1, terms_init: { ntp: ntp.loss_init! - 1.5, ctr: 1, lam: 0.5 } })).toContain("not above");
      expect(stage1Check(ntp, { ...s1, terms_init: { ...s1.terms_init!, lam: 0 } })).toContain("must be > 0");
    },
    60_000,
  );

  test(
    "the PyTorch peer's --stage 1: loss at init = L_NTP + 0.3 L_CTR + 0.4 L_LAM, both terms > 0",
    () => {
      const py = torchPython();
      const script = peerScript();
      if (!py || !script) return; // no torch here: the bench skips the peer too
      const args = [script, "--config", JSON.stringify(tiny64.hf), "--batch", "2", "--seq", "64", "--steps", "1", "--stage", "1", "--threads", "1"];
      const r = spawnSync(py.python, args, { encoding: "utf8", timeout: 60_000 });
      expect(r.status).toBe(0);
      const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { loss_init: number; terms_init: { ntp: number; ctr: number; lam: number }; params: number };
      const t = out.terms_init;
      expect(t.ctr).toBeGreaterThan(0);
      expect(t.lam).toBeGreaterThan(0);
      expect(out.loss_init).toBeCloseTo(t.ntp + 0.3 * t.ctr + 0.4 * t.lam, 4);
      expect(out.loss_init).toBeGreaterThan(t.ntp);
      expect(out.params).toBe(220480 + 2 * 128 * 128 + 2 * 128);
    },
    60_000,
  );
});
