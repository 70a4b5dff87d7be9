// Text data: Hugging Face tokenizers (tokenizer.json through @huggingface/tokenizers), a byte-level BPE
// trainer for from-scratch models, and the Alpaca prompt template with SFT label masking. Stands beside
// `nn` in the layering and imports no GPU code.
export * from "./tokenizer.ts";
export * from "./bpe_train.ts";
export * from "./prompt.ts";
