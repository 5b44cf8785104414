// backproject_scores on CUDA (docs/ops.md). Kernel versions (the op's `version` argument):
//   1  row statistics, then column sums added with float atomics (row_kernels.cuh): any dtype, any M;
//   2  one pass that reads the scores once (scores_onepass.cuh), float atomics: float32/float16/bfloat16 rows of
//      up to kOnePassThreads·kMaxValuesPerThread columns;
//   3  as 1, but the column sums of each chunk of rows are written out and added in order: deterministic.
// Version 0 (auto): 3 under torch.use_deterministic_algorithms(True), else 2 where it applies, else 1. Versions 1
// and 2 call at::globalContext().alertNotDeterministic, so asking for them in deterministic mode raises.
#include <torch/library.h>

#include "../common.h"
#include "row_kernels.cuh"
#include "scores_onepass.cuh"

namespace fss_attr {
namespace {

constexpr int64_t kMaxRowsPerLaunch = int64_t(1) << 20;

// Versions 1 and 3 on one episode's scores [q, m]: row statistics, then column sums, in launches of bounded rows.
template <typename scalar_t, typename acc_t>
void episode_rows_stats(const scalar_t* s, int64_t q, int64_t m, bool softmax, int64_t top_k, const acc_t* w,
                        acc_t* o, acc_t* stats, acc_t* partials) {
  for (int64_t q0 = 0; q0 < q; q0 += kMaxRowsPerLaunch) {
    const int64_t rows = std::min(kMaxRowsPerLaunch, q - q0);
    cuda::accumulate_rows<scalar_t, acc_t>(s + q0 * m, rows, m, acc_t(1), false, softmax, top_k, w + q0, w + q + q0,
                                           o, o + m, stats, partials);
  }
}

template <typename scalar_t, typename acc_t>
void episode(int64_t version, const scalar_t* s, int64_t q, int64_t m, bool softmax, int64_t top_k, const acc_t* w,
             acc_t* o, acc_t* stats, acc_t* partials) {
  if constexpr (std::is_same_v<acc_t, float> && !std::is_same_v<scalar_t, double>) {
    if (version == 2) {
      cuda::accumulate_rows_onepass<scalar_t>(s, q, m, softmax, top_k, w, w + q, o, o + m);
      return;
    }
  }
  episode_rows_stats<scalar_t, acc_t>(s, q, m, softmax, top_k, w, o, stats, version == 3 ? partials : nullptr);
}

at::Tensor backproject_scores_cuda(const at::Tensor& scores_in, const at::Tensor& weights_in, bool softmax,
                                   int64_t top_k, int64_t version) {
  check_scores_inputs(scores_in, weights_in, top_k, at::DeviceType::CUDA);
  check_version(version, 3, "backproject_scores", "CUDA");
  const at::Tensor scores = scores_in.contiguous(), weights = weights_in.contiguous();
  const int64_t b = scores.size(0), q = scores.size(1), m = scores.size(2);
  const bool onepass = cuda::onepass_supports(scores.scalar_type(), m);
  TORCH_CHECK(version != 2 || onepass, "backproject_scores: CUDA version 2 needs float32, float16 or bfloat16 "
              "scores with M <= ", cuda::kOnePassThreads * cuda::kMaxValuesPerThread, ", got ", scores.scalar_type(),
              " and M = ", m);
  if (version == 0) version = at::globalContext().deterministicAlgorithms() ? 3 : onepass ? 2 : 1;
  const auto acc = acc_type_of(scores.scalar_type());
  const c10::cuda::CUDAGuard guard(scores.device());
  at::Tensor out = at::zeros({b, 2, m}, scores.options().dtype(acc));
  if (b == 0 || q == 0 || m == 0) return out;
  if (version != 3) {
    at::globalContext().alertNotDeterministic(version == 2
                                                  ? "fss_attr::backproject_scores (CUDA version 2: float atomics)"
                                                  : "fss_attr::backproject_scores (CUDA version 1: float atomics)");
  }
  at::Tensor stats = version == 2 ? at::empty({0}, out.options())
                                  : at::empty({3 * std::min(q, kMaxRowsPerLaunch)}, out.options());
  at::Tensor partials = version == 3 ? at::empty({cuda::kDeterministicChunks * 2 * m}, out.options())
                                     : at::empty({0}, out.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "backproject_scores_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    for (int64_t bi = 0; bi < b; ++bi) {
      episode<scalar_t, acc_t>(version, scores.data_ptr<scalar_t>() + bi * q * m, q, m, softmax, top_k,
                               weights.data_ptr<acc_t>() + bi * 2 * q, out.data_ptr<acc_t>() + bi * 2 * m,
                               stats.data_ptr<acc_t>(), partials.data_ptr<acc_t>());
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fss_attr, CUDA, m) {
  m.impl("backproject_scores", &backproject_scores_cuda);
}

}  // namespace fss_attr
