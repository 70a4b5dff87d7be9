// The tiny random LLaMA config the test/nn files build with LlamaModel.fromConfig (GQA 4:2, 2 layers, vocabulary 64).
// Each file spreads it and changes what it tests (biases, initializer scale, a pad token).
export const TINY_LLAMA = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 64,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  initializer_range: 0.2,
};
