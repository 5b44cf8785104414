// Parallel driver of the CPU back-projection: rows of P in parallel, each thread accumulating into its own
// pair of column sums, reduced once at the end (no atomics, no [B, Q, M] temporary).
//
// Kernel versions (the ops' `version` argument, docs/ops.md):
//   1  scalar rows: one row at a time, plain scalar loops (std::exp), one pass over the accumulators per row;
//   2  row groups (the default): kRowGroup rows per pass over the accumulators, a short last group padded with
//      rows of weight 0; float32 rows through the vectorised loops of row_kernels_f32.inc.
// Both are deterministic for a fixed number of threads (each thread owns its rows' accumulators and the final
// reduction runs in thread order).
#pragma once

#include <ATen/Parallel.h>

#include "row_kernels.h"

namespace fss_attr {
namespace cpu {

template <typename acc_t>
class ThreadColumnSums {
 public:
  explicit ThreadColumnSums(int64_t m) : m_(m), threads_(at::get_num_threads()), data_(threads_ * 2 * m, acc_t(0)) {}

  void zero() { std::fill(data_.begin(), data_.end(), acc_t(0)); }

  // Rows [q0, q1): load_row(q, buf) writes row q's scores (scale and relu applied) into buf[0..m).
  template <typename LoadRow>
  void add_rows(int64_t q0, int64_t q1, const acc_t* w0, const acc_t* w1, bool softmax, int64_t top_k, int64_t version,
                const LoadRow& load_row) {
    const int64_t m = m_;
    const bool select = top_k > 0 && top_k < m;
    at::parallel_for(q0, q1, 1, [&](int64_t begin, int64_t end) {
      const int64_t t = at::get_thread_num();
      TORCH_CHECK(t < threads_, "fss_attr: thread index ", t, " beyond the ", threads_, " accumulators");
      acc_t* acc0 = data_.data() + t * 2 * m;
      acc_t* acc1 = acc0 + m;
      RowScratch<acc_t> scratch(m, select);
      if (version == 1) {
        for (int64_t q = begin; q < end; ++q) {
          acc_t* row = scratch.row(0);
          load_row(q, row);
          const double factor = prepare_row_scalar(row, m, softmax, top_k, scratch.select.data());
          axpy2_row(row, static_cast<acc_t>(w0[q] * factor), static_cast<acc_t>(w1[q] * factor), m, acc0, acc1);
        }
        return;
      }
      for (int64_t q = begin; q < end; q += kRowGroup) {
        const acc_t* p[kRowGroup];
        acc_t a0[kRowGroup], a1[kRowGroup];
        for (int r = 0; r < kRowGroup; ++r) {
          if (q + r < end) {
            acc_t* row = scratch.row(r);
            load_row(q + r, row);
            const double factor = prepare_row(row, m, softmax, top_k, scratch.select.data());
            a0[r] = static_cast<acc_t>(w0[q + r] * factor);
            a1[r] = static_cast<acc_t>(w1[q + r] * factor);
            p[r] = row;
          } else {  // a short last group: rows of weight 0
            a0[r] = a1[r] = acc_t(0);
            p[r] = scratch.row(0);
          }
        }
        axpy2_rows(p, a0, a1, m, acc0, acc1);
      }
    });
  }

  // out[0..2m) = sum over threads.
  void reduce_into(acc_t* out) const {
    const int64_t n = 2 * m_;
    at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        acc_t s = 0;
        for (int64_t t = 0; t < threads_; ++t) s += data_[t * n + i];
        out[i] = s;
      }
    });
  }

 private:
  int64_t m_;
  int64_t threads_;
  std::vector<acc_t> data_;
};

}  // namespace cpu
}  // namespace fss_attr
