// config.json of LLaMA-family models: the published configs of LLaMA-7B, Llama-2-7B, Llama-3-8B-Instruct,
// Llama-3.1-8B-Instruct, Mistral-7B-v0.3 and Gemma-2B (sizes reduced) normalized as transformers reads
// them; at full size their parameter counts equal the published ones; every kind of bad value names the
// file and the field; the parameter checker lists every difference in one error.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CheckpointError } from "../../src/io/errors.ts";
import {
  checkConfigScale,
  checkParameters,
  compareParameters,
  expectedParameters,
  expectedTensorCount,
  hfConfigJson,
  parameterCount,
  parseHfConfig,
  readHfConfig,
  type LlamaFamilyConfig,
} from "../../src/io/hf_config.ts";

const CONFIGS = join(import.meta.dir, "../fixtures/io/configs");
const raw = (name: string) => JSON.parse(readFileSync(join(CONFIGS, name, "config.json"), "utf8")) as Record<string, unknown>;
const TMP = mkdtempSync(join(tmpdir(), "alignx-io-cfg-"));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

type Expect = Partial<Omit<LlamaFamilyConfig, "raw">>;
const FIXTURES: Record<string, { want: Expect; full: Record<string, number>; params: number }> = {
  "llama-7b": {
    want: {
      modelType: "llama",
      hiddenSize: 256,
      intermediateSize: 688,
      numHiddenLayers: 2,
      numAttentionHeads: 32,
      numKeyValueHeads: 32, // absent: = heads
      headDim: 8,
      rmsNormEps: 1e-6,
      ropeTheta: 10000, // absent: default
      ropeScaling: null,
      maxPositionEmbeddings: 2048,
      vocabSize: 32000,
      tieWordEmbeddings: false,
      attentionBias: false,
      mlpBias: false,
      hiddenAct: "silu",
      bosTokenId: 1,
      eosTokenIds: [2],
      padTokenId: 0,
      torchDtype: "float16",
      slidingWindow: null,
      normWeightOffset: 0,
      embedScale: 1,
      warnings: [],
    },
    full: { hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32 },
    params: 6_738_415_616,
  },
  "llama2-7b": {
    want: { modelType: "llama", numKeyValueHeads: 32, headDim: 8, rmsNormEps: 1e-5, maxPositionEmbeddings: 4096, vocabSize: 32000, padTokenId: null, ropeScaling: null },
    full: { hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32 },
    params: 6_738_415_616,
  },
  "llama3-8b-instruct": {
    want: { numAttentionHeads: 32, numKeyValueHeads: 8, headDim: 8, vocabSize: 128256, ropeTheta: 500000, bosTokenId: 128000, eosTokenIds: [128009], torchDtype: "bfloat16", maxPositionEmbeddings: 8192 },
    full: { hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32 },
    params: 8_030_261_248,
  },
  "llama3.1-8b-instruct": {
    want: {
      numKeyValueHeads: 8,
      vocabSize: 128256,
      ropeTheta: 500000,
      eosTokenIds: [128001, 128008, 128009],
      ropeScaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
      maxPositionEmbeddings: 131072,
    },
    full: { hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32 },
    params: 8_030_261_248,
  },
  "mistral-7b-v0.3": {
    want: { modelType: "mistral", numKeyValueHeads: 8, vocabSize: 32768, ropeTheta: 1e6, rmsNormEps: 1e-5, slidingWindow: null, maxPositionEmbeddings: 32768, tieWordEmbeddings: false },
    full: { hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32 },
    params: 7_248_023_552,
  },
  "gemma-2b": {
    want: {
      modelType: "gemma",
      hiddenSize: 128,
      numAttentionHeads: 8,
      numKeyValueHeads: 1,
      headDim: 256, // given, ≠ hidden / heads here
      tieWordEmbeddings: true, // absent: Gemma's default
      hiddenAct: "gelu_pytorch_tanh",
      vocabSize: 256000,
      bosTokenId: 2,
      eosTokenIds: [1],
      padTokenId: 0,
      normWeightOffset: 1,
      embedScale: Math.sqrt(128),
      warnings: [],
    },
    full: { hidden_size: 2048, intermediate_size: 16384, num_hidden_layers: 18 },
    params: 2_506_172_416,
  },
};

describe("published configs", () => {
  for (const [name, { want, full, params }] of Object.entries(FIXTURES)) {
    test(`${name}: normalized values`, async () => {
      const cfg = await readHfConfig(join(CONFIGS, name)); // the directory
      expect(cfg).toMatchObject(want);
      expect(cfg.raw).toEqual(raw(name));
      expect(await readHfConfig(join(CONFIGS, name, "config.json"))).toEqual(cfg); // the file
    });
    test(`${name}: at full size, ${params.toLocaleString("en")} parameters as published`, () => {
      const cfg = parseHfConfig({ ...raw(name), ...full }, `${name}/config.json`);
      expect(parameterCount(cfg)).toBe(params);
    });
  }

  test("Gemma-7B's head_dim 256 × 16 heads ≠ hidden 3072: q_proj is [4096, 3072], 8.54B parameters", () => {
    const cfg = parseHfConfig({ ...raw("gemma-2b"), hidden_size: 3072, intermediate_size: 24576, num_hidden_layers: 28, num_attention_heads: 16, num_key_value_heads: 16 });
    const p = new Map(expectedParameters(cfg).map((x) => [x.name, x.shape]));
    expect(p.get("model.layers.0.self_attn.q_proj.weight")).toEqual([4096, 3072]);
    expect(p.get("model.layers.0.self_attn.o_proj.weight")).toEqual([3072, 4096]);
    expect(parameterCount(cfg)).toBe(8_537_680_896);
  });

  test("Gemma: an old hidden_act 'gelu' reads as gelu_pytorch_tanh with a warning; hidden_activation wins", () => {
    const old = parseHfConfig({ ...raw("gemma-2b"), hidden_act: "gelu" });
    expect(old.hiddenAct).toBe("gelu_pytorch_tanh");
    expect(old.warnings).toEqual(['hidden_act "gelu" read as "gelu_pytorch_tanh" (Gemma\'s activation, as transformers does)']);
    expect(parseHfConfig({ ...raw("gemma-2b"), hidden_act: "gelu", hidden_activation: "gelu" }).hiddenAct).toBe("gelu");
  });

  test("Mistral without sliding_window gets transformers' 4096; LLaMA-1's pad_token_id -1 means none", () => {
    const m = { ...raw("mistral-7b-v0.3") };
    delete m.sliding_window;
    expect(parseHfConfig(m).slidingWindow).toBe(4096);
    const l = parseHfConfig({ ...raw("llama-7b"), pad_token_id: -1 });
    expect(l.padTokenId).toBeNull();
    expect(l.warnings).toEqual(["pad_token_id -1 read as no padding token"]);
  });

  test("hfConfigJson keeps every field and re-parses to the same config; torch_dtype can be updated", () => {
    const cfg = parseHfConfig(raw("llama3.1-8b-instruct"));
    expect(parseHfConfig(JSON.parse(hfConfigJson(cfg)))).toEqual(cfg);
    const bf = JSON.parse(hfConfigJson(cfg, { torchDtype: "float32" }));
    expect(bf.torch_dtype).toBe("float32");
    expect(bf.rope_scaling).toEqual(raw("llama3.1-8b-instruct").rope_scaling);
  });
});

describe("bad configs name the file and the field", () => {
  const base = () => raw("llama3-8b-instruct");
  const cases: [string, Record<string, unknown>, string, RegExp][] = [
    ["unknown model_type", { model_type: "gpt2" }, "model_type", /"gpt2" is not supported \(supported: llama, mistral, gemma\)/],
    ["missing model_type", { model_type: undefined }, "model_type", /missing \(supported/],
    ["missing hidden_size", { hidden_size: undefined }, "hidden_size", /missing \(required\)/],
    ["zero layers", { num_hidden_layers: 0 }, "num_hidden_layers", /0 is not an integer >= 1/],
    ["fractional vocab", { vocab_size: 32000.5 }, "vocab_size", /32000.5 is not an integer >= 1/],
    ["string size", { intermediate_size: "14336" }, "intermediate_size", /"14336" is not an integer >= 1/],
    ["kv heads not dividing heads", { num_key_value_heads: 5 }, "num_key_value_heads", /num_attention_heads \(32\) is not a multiple of num_key_value_heads \(5\)/],
    ["hidden not divisible by heads", { hidden_size: 250 }, "num_attention_heads", /hidden_size \(250\) is not divisible by num_attention_heads \(32\), and no head_dim is given/],
    ["odd head_dim", { head_dim: 7 }, "head_dim", /head size 7 is odd/],
    ["negative rms_norm_eps", { rms_norm_eps: -1e-5 }, "rms_norm_eps", /-0.00001 is not a number > 0/],
    ["zero rope_theta", { rope_theta: 0 }, "rope_theta", /0 is not a number > 0/],
    ["unsupported activation", { hidden_act: "relu" }, "hidden_act", /"relu" is not a supported activation \(silu, gelu, gelu_pytorch_tanh\)/],
    ["bos beyond the vocabulary", { bos_token_id: 128256 }, "bos_token_id", /128256 is not a token id in \[0, vocab_size 128256\)/],
    ["eos list with a bad id", { eos_token_id: [1, -3] }, "eos_token_id", /-3 is not a token id/],
    ["empty eos list", { eos_token_id: [] }, "eos_token_id", /is an empty list/],
    ["tie_word_embeddings not boolean", { tie_word_embeddings: "false" }, "tie_word_embeddings", /"false" is not true or false/],
    ["unknown torch_dtype", { torch_dtype: "int8" }, "torch_dtype", /"int8" is not float32, float16 or bfloat16/],
    ["unsupported rope type", { rope_scaling: { rope_type: "yarn", factor: 4 } }, "rope_scaling", /rope type "yarn" is not supported/],
    ["llama3 rope without its fields", { rope_scaling: { rope_type: "llama3", factor: 8 } }, "rope_scaling", /low_freq_factor is undefined, not a number > 0/],
    ["llama3 rope with low ≥ high", { rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 8192 } }, "rope_scaling", /high_freq_factor \(1\) must be above low_freq_factor \(4\)/],
    ["sliding window on LLaMA", { sliding_window: 4096 }, "sliding_window", /only Mistral uses sliding-window attention/],
    ["attention dropout of 1", { attention_dropout: 1 }, "attention_dropout", /1 is not a probability in \[0, 1\)/],
    ["architectures not a list", { architectures: "LlamaForCausalLM" }, "architectures", /is not a list of strings/],
    ["a billion layers", { num_hidden_layers: 1e9 }, "num_hidden_layers", /1000000000 layers are more than the 10000 this loader accepts/],
    ["a vocabulary of 1e11", { vocab_size: 1e11 }, "vocab_size", /the config describes 51\.2T parameters \(2 layers, hidden 256, .*vocab 100000000000\), more than the 10\.0T this loader accepts/],
    ["an intermediate size of 1e11", { intermediate_size: 1e11 }, "intermediate_size", /the config describes 154T parameters \(2 layers, hidden 256, intermediate 100000000000/],
  ];
  for (const [what, patch, field, re] of cases)
    test(what, () => {
      const doc = { ...base(), ...patch };
      for (const k of Object.keys(patch)) if (patch[k] === undefined) delete doc[k];
      let err: unknown;
      try {
        parseHfConfig(doc, "some/dir/config.json");
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CheckpointError);
      const e = err as CheckpointError;
      expect(e.field).toBe(field);
      expect(e.message.startsWith(`some/dir/config.json (field "${field}"): `)).toBe(true);
      expect(e.message).toMatch(re);
    });

  test("family-specific: Mistral has no attention bias, Gemma and Mistral no MLP bias", () => {
    expect(() => parseHfConfig({ ...raw("mistral-7b-v0.3"), attention_bias: true })).toThrow(/\(field "attention_bias"\): true, but transformers' Mistral has no attention biases/);
    expect(() => parseHfConfig({ ...raw("gemma-2b"), mlp_bias: true })).toThrow(/\(field "mlp_bias"\): true, but transformers' Gemma has no MLP biases/);
  });

  test("files: missing, not JSON, not an object", async () => {
    await expect(readHfConfig(join(TMP, "nothing"))).rejects.toThrow(/nothing: no such file/);
    await expect(readHfConfig(TMP)).rejects.toThrow(`${join(TMP, "config.json")}: no such file`);
    writeFileSync(join(TMP, "config.json"), "{hidden_size: 1}");
    await expect(readHfConfig(TMP)).rejects.toThrow(/config\.json: not valid JSON: JSON Parse error/);
    writeFileSync(join(TMP, "config.json"), "[]");
    await expect(readHfConfig(TMP)).rejects.toThrow(/config\.json: not a JSON object/);
  });
});

describe("sizes are checked in O(1) before anything proportional to them is built", () => {
  test("parameterCount and expectedTensorCount are closed forms of expectedParameters", () => {
    for (const name of ["llama-7b", "llama2-7b", "llama3-8b-instruct", "llama3.1-8b-instruct", "mistral-7b-v0.3", "gemma-2b"])
      for (const patch of [{}, { attention_bias: name.startsWith("llama"), mlp_bias: name.startsWith("llama") }, { tie_word_embeddings: true }]) {
        const cfg = parseHfConfig({ ...raw(name), ...patch });
        const list = expectedParameters(cfg);
        expect(parameterCount(cfg)).toBe(list.reduce((n, p) => n + p.shape.reduce((a, d) => a * d, 1), 0));
        expect(expectedTensorCount(cfg)).toBe(list.length);
      }
  });

  test("a config out of proportion to the checkpoint fails in one line naming config.json, both sizes and the checkpoint", () => {
    const cfg = parseHfConfig({ ...raw("llama3-8b-instruct"), num_hidden_layers: 2 });
    const params = expectedParameters(cfg).map((p) => ({ name: p.name, shape: p.shape }));
    checkConfigScale(cfg, params, "d/config.json", "d"); // fits: nothing to say
    const deep = parseHfConfig({ ...raw("llama3-8b-instruct"), num_hidden_layers: 9000 });
    const t0 = performance.now();
    let err: unknown;
    try {
      checkConfigScale(deep, params, "d/config.json", "d");
    } catch (e) {
      err = e;
    }
    expect(performance.now() - t0).toBeLessThan(50);
    expect(err).toBeInstanceOf(CheckpointError);
    const e = err as CheckpointError;
    expect(e.file).toBe("d/config.json");
    expect(e.field).toBe("num_hidden_layers");
    expect(e.message).toMatch(/the config describes 7\.74B parameters in 81003 tensors \(9000 layers, hidden 256, .*\), but the checkpoint d holds 67\.4M in 21 tensors \(2 layers\): the config does not describe these weights/);
    // The same layer count with an MLP 200 times too wide: named without a field.
    const wide = parseHfConfig({ ...raw("llama3-8b-instruct"), num_hidden_layers: 2, intermediate_size: 896 * 200 });
    expect(() => checkConfigScale(wide, params, "d/config.json", "d")).toThrow(/d\/config\.json: the config describes/);
  });
});

describe("expected parameters", () => {
  test("HF names and [out, in] shapes, in model order; lm_head only when untied; biases when asked", () => {
    const cfg = parseHfConfig(raw("llama3-8b-instruct")); // hidden 256, 32 heads of 8, 8 kv heads, inter 896
    const p = expectedParameters(cfg);
    expect(p.length).toBe(1 + 2 * 9 + 2);
    expect(p.slice(0, 10)).toEqual([
      { name: "model.embed_tokens.weight", shape: [128256, 256] },
      { name: "model.layers.0.self_attn.q_proj.weight", shape: [256, 256] },
      { name: "model.layers.0.self_attn.k_proj.weight", shape: [64, 256] },
      { name: "model.layers.0.self_attn.v_proj.weight", shape: [64, 256] },
      { name: "model.layers.0.self_attn.o_proj.weight", shape: [256, 256] },
      { name: "model.layers.0.mlp.gate_proj.weight", shape: [896, 256] },
      { name: "model.layers.0.mlp.up_proj.weight", shape: [896, 256] },
      { name: "model.layers.0.mlp.down_proj.weight", shape: [256, 896] },
      { name: "model.layers.0.input_layernorm.weight", shape: [256] },
      { name: "model.layers.0.post_attention_layernorm.weight", shape: [256] },
    ]);
    expect(p.slice(-2)).toEqual([
      { name: "model.norm.weight", shape: [256] },
      { name: "lm_head.weight", shape: [128256, 256] },
    ]);
    const gemma = expectedParameters(parseHfConfig(raw("gemma-2b")));
    expect(gemma.at(-1)!.name).toBe("model.norm.weight");
    expect(gemma.find((x) => x.name === "model.layers.1.self_attn.k_proj.weight")!.shape).toEqual([256, 128]);
    const biased = expectedParameters(parseHfConfig({ ...raw("llama-7b"), attention_bias: true, mlp_bias: true })).filter((x) => x.name.endsWith(".bias"));
    expect(biased.length).toBe(2 * 7);
    expect(biased.slice(0, 7)).toEqual([
      { name: "model.layers.0.self_attn.q_proj.bias", shape: [256] },
      { name: "model.layers.0.self_attn.k_proj.bias", shape: [256] },
      { name: "model.layers.0.self_attn.v_proj.bias", shape: [256] },
      { name: "model.layers.0.self_attn.o_proj.bias", shape: [256] },
      { name: "model.layers.0.mlp.gate_proj.bias", shape: [688] },
      { name: "model.layers.0.mlp.up_proj.bias", shape: [688] },
      { name: "model.layers.0.mlp.down_proj.bias", shape: [256] },
    ]);
  });

  test("checkParameters lists ALL missing, unexpected, mis-shaped and wrongly typed names in one error", () => {
    const cfg = parseHfConfig(raw("mistral-7b-v0.3"));
    const good = expectedParameters(cfg).map((p) => ({ ...p, dtype: "BF16" }));
    expect(checkParameters(cfg, good, "ckpt").missing).toEqual([]);
    const params = good
      .filter((p) => p.name !== "model.layers.1.mlp.up_proj.weight" && p.name !== "lm_head.weight")
      .map((p) =>
        p.name === "model.norm.weight"
          ? { ...p, shape: [255] }
          : p.name === "model.layers.0.self_attn.k_proj.weight"
            ? { ...p, shape: [256, 256] }
            : p.name === "model.layers.0.input_layernorm.weight"
              ? { ...p, dtype: "I64" }
              : p,
      );
    params.push({ name: "model.layers.2.mlp.up_proj.weight", shape: [896, 256], dtype: "BF16" }, { name: "score.weight", shape: [2, 256], dtype: "BF16" });
    let msg = "";
    try {
      checkParameters(cfg, params, "/ckpt/dir");
    } catch (e) {
      expect(e).toBeInstanceOf(CheckpointError);
      msg = (e as Error).message;
    }
    expect(msg.split("\n")).toEqual([
      "/ckpt/dir: tensors do not match the config (mistral, 2 layers, hidden 256, vocab 32768): 2 missing, 2 unexpected, 2 mis-shaped, 1 wrong dtype",
      "  missing: model.layers.1.mlp.up_proj.weight [896, 256]",
      "  missing: lm_head.weight [32768, 256]",
      "  unexpected: model.layers.2.mlp.up_proj.weight [896, 256]",
      "  unexpected: score.weight [2, 256]",
      "  mis-shaped: model.layers.0.self_attn.k_proj.weight is [256, 256], expected [64, 256]",
      "  mis-shaped: model.norm.weight is [255], expected [256]",
      "  wrong dtype: model.layers.0.input_layernorm.weight is I64, expected one of F32, F16, BF16",
    ]);
  });

  test("rotary inv_freq buffers and a tied model's stored lm_head are ignored, not unexpected", () => {
    const cfg = parseHfConfig(raw("gemma-2b"));
    const params = [
      ...expectedParameters(cfg),
      { name: "lm_head.weight", shape: [256000, 128] },
      { name: "model.layers.0.self_attn.rotary_emb.inv_freq", shape: [128] },
    ];
    expect(compareParameters(cfg, params)).toEqual({
      missing: [],
      unexpected: [],
      misshaped: [],
      badDtype: [],
      ignored: ["lm_head.weight", "model.layers.0.self_attn.rotary_emb.inv_freq"],
    });
    // An lm_head of the wrong shape in a tied model is still reported.
    expect(compareParameters(cfg, [...expectedParameters(cfg), { name: "lm_head.weight", shape: [5, 128] }]).unexpected.length).toBe(1);
  });
});
