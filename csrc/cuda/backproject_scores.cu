// backproject_scores on CUDA (docs/ops.md). Version 2 (scores_onepass.cuh: one read of the scores) for
// float32/float16/bfloat16 rows of up to kOnePassThreads·kMaxValuesPerThread columns; version 1
// (row_kernels.cuh: row statistics, then column sums) for float64 and longer rows.
#include <torch/library.h>

#include "../common.h"
#include "row_kernels.cuh"
#include "scores_onepass.cuh"

namespace fss_attr {
namespace {

constexpr int64_t kMaxRowsPerLaunch = int64_t(1) << 20;

// Version 1 on one episode's scores [q, m]: row statistics, then column sums, in launches of bounded rows.
template <typename scalar_t, typename acc_t>
void episode_rows_stats(const scalar_t* s, int64_t q, int64_t m, bool softmax, int64_t top_k, const acc_t* w,
                        acc_t* o, acc_t* stats) {
  for (int64_t q0 = 0; q0 < q; q0 += kMaxRowsPerLaunch) {
    const int64_t rows = std::min(kMaxRowsPerLaunch, q - q0);
    cuda::accumulate_rows<scalar_t, acc_t>(s + q0 * m, rows, m, acc_t(1), false, softmax, top_k, w + q0, w + q + q0,
                                           o, o + m, stats);
  }
}

// One episode: version 2 where it applies (float accumulation), else version 1.
template <typename scalar_t>
void episode(const scalar_t* s, int64_t q, int64_t m, bool softmax, int64_t top_k, const float* w, float* o,
             float* stats) {
  if (cuda::onepass_supports(c10::CppTypeToScalarType<scalar_t>::value, m)) {
    cuda::accumulate_rows_onepass<scalar_t>(s, q, m, softmax, top_k, w, w + q, o, o + m);
  } else {
    episode_rows_stats<scalar_t, float>(s, q, m, softmax, top_k, w, o, stats);
  }
}

void episode(const double* s, int64_t q, int64_t m, bool softmax, int64_t top_k, const double* w, double* o,
             double* stats) {
  episode_rows_stats<double, double>(s, q, m, softmax, top_k, w, o, stats);
}

at::Tensor backproject_scores_cuda(const at::Tensor& scores, const at::Tensor& weights, bool softmax, int64_t top_k) {
  check_scores_inputs(scores, weights, top_k, at::DeviceType::CUDA);
  const int64_t b = scores.size(0), q = scores.size(1), m = scores.size(2);
  const auto acc = acc_type_of(scores.scalar_type());
  const c10::cuda::CUDAGuard guard(scores.device());
  at::Tensor out = at::zeros({b, 2, m}, scores.options().dtype(acc));
  if (b == 0 || q == 0 || m == 0) return out;
  at::Tensor stats = cuda::onepass_supports(scores.scalar_type(), m)
                         ? at::empty({0}, out.options())
                         : at::empty({3 * std::min(q, kMaxRowsPerLaunch)}, out.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "backproject_scores_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    for (int64_t bi = 0; bi < b; ++bi) {
      episode(scores.data_ptr<scalar_t>() + bi * q * m, q, m, softmax, top_k,
              weights.data_ptr<acc_t>() + bi * 2 * q, out.data_ptr<acc_t>() + bi * 2 * m, stats.data_ptr<acc_t>());
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fss_attr, CUDA, m) {
  m.impl("backproject_scores", &backproject_scores_cuda);
}

}  // namespace fss_attr
