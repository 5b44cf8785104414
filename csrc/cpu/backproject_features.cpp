// backproject_features on CPU (docs/ops.md): streams over blocks of query rows. Each block's scores
// [rows, M] come from one matrix product, then the rows are processed in parallel exactly as in
// backproject_scores (versions 1 and 2 of accumulate.h). Extra memory: the normalised/converted features and one block.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>

#include "../common.h"
#include "accumulate.h"

namespace fss_attr {
namespace {

constexpr int64_t kBlockElements = int64_t(1) << 23;  // scores per block: 32 MB in float32

at::Tensor backproject_features_cpu(const at::Tensor& query_in, const at::Tensor& support_in,
                                    const at::Tensor& weights_in, std::string similarity, double scale, bool relu,
                                    bool softmax, int64_t top_k, int64_t version) {
  const bool cosine =
      check_features_inputs(query_in, support_in, weights_in, similarity, top_k, at::DeviceType::CPU);
  check_version(version, 2, "backproject_features", "CPU");
  // Strided inputs are fine: the kernel reads contiguous copies.
  const at::Tensor query = query_in.contiguous(), support = support_in.contiguous(), weights = weights_in.contiguous();
  const int64_t b = query.size(0), q = query.size(1), m = support.size(1);
  const auto acc = acc_type_of(query.scalar_type());
  at::Tensor out = at::zeros({b, 2, m}, query.options().dtype(acc));
  if (b == 0 || q == 0 || m == 0) return out;

  at::Tensor qf = query.to(acc), kf = support.to(acc);
  if (cosine) {
    qf = normalize_last(qf);
    kf = normalize_last(kf);
  }
  const int64_t rows_per_block = std::max<int64_t>(1, std::min<int64_t>(q, kBlockElements / m));
  AT_DISPATCH_FLOATING_TYPES(qf.scalar_type(), "backproject_features_cpu", [&] {
    using acc_t = scalar_t;
    cpu::ThreadColumnSums<acc_t> sums(m);
    at::Tensor block = at::empty({rows_per_block, m}, qf.options());
    for (int64_t bi = 0; bi < b; ++bi) {
      const acc_t* w = weights.data_ptr<acc_t>() + bi * 2 * q;
      const at::Tensor kt = kf[bi].t();
      sums.zero();
      for (int64_t q0 = 0; q0 < q; q0 += rows_per_block) {
        const int64_t rows = std::min(rows_per_block, q - q0);
        at::Tensor scores = block.narrow(0, 0, rows);
        at::mm_out(scores, qf[bi].narrow(0, q0, rows), kt);
        const acc_t* s = scores.data_ptr<acc_t>();
        sums.add_rows(q0, q0 + rows, w, w + q, softmax, top_k, version, [&](int64_t row, acc_t* buf) {
          cpu::load_row<acc_t, acc_t>(s + (row - q0) * m, buf, m, static_cast<acc_t>(scale), relu);
        });
      }
      sums.reduce_into(out.data_ptr<acc_t>() + bi * 2 * m);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fss_attr, CPU, m) {
  m.impl("backproject_features", &backproject_features_cpu);
}

}  // namespace fss_attr
