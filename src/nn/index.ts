// The model layer (above tensor and io): the Module base with HF-named parameters and checkpoint plumbing,
// the LLaMA-family decoder (LlamaForCausalLM, Mistral, Gemma), batch checking, the memory estimate.
export * from "./module.ts";
export * from "./batch.ts";
export * from "./llama.ts";
export * from "./kv_cache.ts";
export * from "./generate.ts";
