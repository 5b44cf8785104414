// backproject_features on CUDA (docs/ops.md), version 1: blocks of query rows; each block's scores
// [rows, M] come from one cuBLAS product (float32 stays float32: no TF32), then the row kernels of
// row_kernels.cuh apply scale, relu, top-k and softmax and accumulate. Memory: the block (<= 256 MB).
#include <torch/library.h>

#include <string>

#include "../common.h"
#include "row_kernels.cuh"

namespace fss_attr {
namespace {

constexpr int64_t kBlockElements = int64_t(1) << 26;

at::Tensor backproject_features_cuda(const at::Tensor& query, const at::Tensor& support, const at::Tensor& weights,
                                     std::string similarity, double scale, bool relu, bool softmax, int64_t top_k) {
  const bool cosine = check_features_inputs(query, support, weights, similarity, top_k, at::DeviceType::CUDA);
  const int64_t b = query.size(0), q = query.size(1), m = support.size(1);
  const auto acc = acc_type_of(query.scalar_type());
  const c10::cuda::CUDAGuard guard(query.device());
  at::Tensor out = at::zeros({b, 2, m}, query.options().dtype(acc));
  if (b == 0 || q == 0 || m == 0) return out;

  at::Tensor qf = query.to(acc), kf = support.to(acc);
  if (cosine) {
    qf = normalize_last(qf);
    kf = normalize_last(kf);
  }
  const int64_t rows_per_block = std::max<int64_t>(1, std::min<int64_t>({q, kBlockElements / m, int64_t(1) << 20}));
  at::Tensor block = at::empty({rows_per_block, m}, qf.options());
  at::Tensor stats = at::empty({3 * rows_per_block}, qf.options());
  AT_DISPATCH_FLOATING_TYPES(qf.scalar_type(), "backproject_features_cuda", [&] {
    using acc_t = scalar_t;
    for (int64_t bi = 0; bi < b; ++bi) {
      const acc_t* w = weights.data_ptr<acc_t>() + bi * 2 * q;
      acc_t* o = out.data_ptr<acc_t>() + bi * 2 * m;
      const at::Tensor kt = kf[bi].t();
      for (int64_t q0 = 0; q0 < q; q0 += rows_per_block) {
        const int64_t rows = std::min(rows_per_block, q - q0);
        at::Tensor scores = block.narrow(0, 0, rows);
        at::mm_out(scores, qf[bi].narrow(0, q0, rows), kt);
        cuda::accumulate_rows<acc_t, acc_t>(scores.data_ptr<acc_t>(), rows, m, static_cast<acc_t>(scale), relu,
                                            softmax, top_k, w + q0, w + q + q0, o, o + m, stats.data_ptr<acc_t>());
      }
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fss_attr, CUDA, m) {
  m.impl("backproject_features", &backproject_features_cuda);
}

}  // namespace fss_attr
