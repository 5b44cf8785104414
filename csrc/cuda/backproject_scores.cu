// backproject_scores on CUDA (docs/ops.md). Kernels in row_kernels.cuh.
#include <torch/library.h>

#include "../common.h"
#include "row_kernels.cuh"

namespace fss_attr {
namespace {

constexpr int64_t kMaxRowsPerLaunch = int64_t(1) << 20;

at::Tensor backproject_scores_cuda(const at::Tensor& scores, const at::Tensor& weights, bool softmax, int64_t top_k) {
  check_scores_inputs(scores, weights, top_k, at::DeviceType::CUDA);
  const int64_t b = scores.size(0), q = scores.size(1), m = scores.size(2);
  const auto acc = acc_type_of(scores.scalar_type());
  const c10::cuda::CUDAGuard guard(scores.device());
  at::Tensor out = at::zeros({b, 2, m}, scores.options().dtype(acc));
  if (b == 0 || q == 0 || m == 0) return out;
  at::Tensor stats = at::empty({3 * std::min(q, kMaxRowsPerLaunch)}, scores.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "backproject_scores_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    for (int64_t bi = 0; bi < b; ++bi) {
      const acc_t* w = weights.data_ptr<acc_t>() + bi * 2 * q;
      acc_t* o = out.data_ptr<acc_t>() + bi * 2 * m;
      for (int64_t q0 = 0; q0 < q; q0 += kMaxRowsPerLaunch) {
        const int64_t rows = std::min(kMaxRowsPerLaunch, q - q0);
        cuda::accumulate_rows<scalar_t, acc_t>(scores.data_ptr<scalar_t>() + (bi * q + q0) * m, rows, m, acc_t(1),
                                               false, softmax, top_k, w + q0, w + q + q0, o, o + m,
                                               stats.data_ptr<acc_t>());
      }
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fss_attr, CUDA, m) {
  m.impl("backproject_scores", &backproject_scores_cuda);
}

}  // namespace fss_attr
