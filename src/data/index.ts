// Text data: Hugging Face tokenizers (tokenizer.json through @huggingface/tokenizers), SentencePiece's own .model
// files (sentencepiece.ts, read by hand: spBLEU's tokenizer), a byte-level BPE
// trainer for from-scratch models, the Alpaca prompt template with SFT label masking, and the corpus pipeline:
// readers per input format → examples (AlignX spans) → shards + manifest (pack) → checks (verify) → batches
// (loader). Sits above tensor in the layering (it uses only the host PRNG) and imports no GPU code.
export * from "./tokenizer.ts";
export * from "./sentencepiece.ts";
export * from "./bpe_train.ts";
export * from "./prompt.ts";
export * from "./corpus.ts";
export * from "./languages.ts";
export * from "./formats/index.ts";
export * from "./examples.ts";
export * from "./shard.ts";
export * from "./manifest.ts";
export * from "./pack.ts";
export * from "./verify.ts";
export * from "./loader.ts";
