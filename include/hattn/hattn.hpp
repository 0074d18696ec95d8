#pragma once
/// \file
/// Umbrella header: everything hattn offers.

#include "hattn/config.hpp"

#include "hattn/core/arena.hpp"
#include "hattn/core/blas.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/rng.hpp"
#include "hattn/core/tensor.hpp"

#include "hattn/autograd/tape.hpp"
#include "hattn/autograd/var.hpp"

#include "hattn/ops/attention.hpp"
#include "hattn/ops/cross_entropy.hpp"
#include "hattn/ops/dropout.hpp"
#include "hattn/ops/embedding.hpp"
#include "hattn/ops/layernorm.hpp"
#include "hattn/ops/linear.hpp"
#include "hattn/ops/linear_cross_entropy.hpp"
#include "hattn/ops/relu.hpp"
#include "hattn/ops/residual.hpp"
#include "hattn/ops/rows.hpp"
#include "hattn/ops/softmax.hpp"
#include "hattn/ops/copy_rows.hpp"

#include "hattn/io/safetensors.hpp"
#include "hattn/io/tokenizer.hpp"
#include "hattn/io/gpt2_bpe.hpp"
#include "hattn/model/decoder.hpp"
#include "hattn/io/checkpoint.hpp"
#include "hattn/train/adam.hpp"
#include "hattn/model/generate.hpp"
#include "hattn/train/adamw.hpp"
#include "hattn/train/clip.hpp"
#include "hattn/train/schedule.hpp"
#include "hattn/train/trainer.hpp"
#include "hattn/data/dataset.hpp"
#include "hattn/data/listops.hpp"
#include "hattn/data/text_file.hpp"
