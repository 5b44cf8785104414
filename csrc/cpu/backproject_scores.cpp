// backproject_scores on CPU (docs/ops.md): one pass over the scores, row by row.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../common.h"
#include "accumulate.h"

namespace fss_attr {
namespace {

at::Tensor backproject_scores_cpu(const at::Tensor& scores, const at::Tensor& weights, bool softmax, int64_t top_k) {
  check_scores_inputs(scores, weights, top_k, at::DeviceType::CPU);
  const int64_t b = scores.size(0), q = scores.size(1), m = scores.size(2);
  const auto acc = acc_type_of(scores.scalar_type());
  at::Tensor out = at::zeros({b, 2, m}, scores.options().dtype(acc));
  if (b == 0 || q == 0 || m == 0) return out;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "backproject_scores_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    cpu::ThreadColumnSums<acc_t> sums(m);
    for (int64_t bi = 0; bi < b; ++bi) {
      const scalar_t* s = scores.data_ptr<scalar_t>() + bi * q * m;
      const acc_t* w = weights.data_ptr<acc_t>() + bi * 2 * q;
      sums.zero();
      sums.add_rows(0, q, w, w + q, softmax, top_k, [&](int64_t row, acc_t* buf) {
        cpu::load_row<scalar_t, acc_t>(s + row * m, buf, m, acc_t(1), false);
      });
      sums.reduce_into(out.data_ptr<acc_t>() + bi * 2 * m);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fss_attr, CPU, m) {
  m.impl("backproject_scores", &backproject_scores_cpu);
}

}  // namespace fss_attr
