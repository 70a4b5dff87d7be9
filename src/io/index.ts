// Checkpoint I/O: safetensors files, Hugging Face checkpoint directories (sharded or not), config.json
// of LLaMA-family models, atomic saves. Stands beside `nn` in the layering: it uses gpu and tensor only.
export * from "./errors.ts";
export * from "./half.ts";
export * from "./atomic.ts";
export * from "./output.ts";
export * from "./safetensors.ts";
export * from "./checkpoint.ts";
export * from "./hf_config.ts";
