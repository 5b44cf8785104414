// backproject_scores on CPU (docs/ops.md): one pass over the scores, row by row; versions 1 (scalar rows) and
// 2 (row groups, the default) as in accumulate.h.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../common.h"
#include "accumulate.h"

namespace fss_attr {
namespace {

at::Tensor backproject_scores_cpu(const at::Tensor& scores_in, const at::Tensor& weights_in, bool softmax, int64_t top_k,
                                  int64_t version) {
  check_scores_inputs(scores_in, weights_in, top_k, at::DeviceType::CPU);
  check_version(version, 2, "backproject_scores", "CPU");
  // Strided inputs (a transpose, a slice) are fine: the kernel reads a contiguous copy.
  const at::Tensor scores = scores_in.contiguous(), weights = weights_in.contiguous();
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
      sums.add_rows(0, q, w, w + q, softmax, top_k, version, [&](int64_t row, acc_t* buf) {
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
