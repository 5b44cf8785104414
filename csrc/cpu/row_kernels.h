// The per-row work of the back-projection ops on CPU: top-k threshold, softmax statistics, and the
// accumulation of w0·p and w1·p into two column accumulators (docs/ops.md, "row rules").
//
// The float32 loops (row_kernels_f32.inc) are written so that GCC vectorises them: lane arrays instead of
// scalar reductions, a branch-free polynomial exp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

// Which instructions the float32 loops were compiled for (setup.py adds -mavx2 -mfma when the build
// machine has them; FSS_ATTR_CPU_FLAGS overrides).
#if defined(__AVX512F__)
#define FSS_ATTR_CPU_PATHS "avx512f"
#elif defined(__AVX2__) && defined(__FMA__)
#define FSS_ATTR_CPU_PATHS "avx2+fma"
#elif defined(__AVX2__)
#define FSS_ATTR_CPU_PATHS "avx2"
#else
#define FSS_ATTR_CPU_PATHS "baseline (no AVX2)"
#endif

namespace fss_attr {
namespace cpu {

constexpr int kLanes = 16;
// "Off" for the top-k threshold and the start of a max in the float32 loops: the lowest finite float, since
// these loops are compiled assuming finite values (inputs are checked finite by the Python layer).
constexpr float kNoThreshold = -std::numeric_limits<float>::max();

// The k-th largest of x[0..m) (1-based k), using scratch of m entries.
template <typename acc_t>
static acc_t kth_largest(const acc_t* x, int64_t m, int64_t k, acc_t* scratch) {
  std::copy(x, x + m, scratch);
  std::nth_element(scratch, scratch + (k - 1), scratch + m, std::greater<acc_t>());
  return scratch[k - 1];
}

// GCC if-converts the float comparisons of these loops (and so vectorises them) only without trapping
// math and with finite values; the Python layer rejects NaN and infinite inputs.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math", "finite-math-only", "no-signed-zeros", "no-math-errno")
#endif
#include "row_kernels_f32.inc"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

// One row of P, accumulated into (acc0, acc1) with weights (w0, w1). `row` holds the row's scores
// (after scale and relu) and is overwritten.
static inline void accumulate_row(float* row, int64_t m, bool softmax, int64_t top_k, float w0, float w1,
                                  float* acc0, float* acc1, float* select) {
  accumulate_row_f32(row, m, softmax, top_k, w0, w1, acc0, acc1, select);
}

// Per-thread buffers for one row.
template <typename acc_t>
struct RowScratch {
  std::vector<acc_t> row, select;
  explicit RowScratch(int64_t m, bool need_select) : row(m), select(need_select ? m : 0) {}
};

static inline void accumulate_row(double* row, int64_t m, bool softmax, int64_t top_k, double w0, double w1,
                                  double* acc0, double* acc1, double* select) {
  const double ninf = -std::numeric_limits<double>::infinity();
  const double thr = (top_k > 0 && top_k < m) ? kth_largest(row, m, top_k, select) : ninf;
  if (!softmax) {
    for (int64_t j = 0; j < m; ++j) {
      const double p = row[j] >= thr ? row[j] : 0.0;
      acc0[j] += w0 * p;
      acc1[j] += w1 * p;
    }
    return;
  }
  double mx = ninf;
  for (int64_t j = 0; j < m; ++j)
    if (row[j] >= thr) mx = std::max(mx, row[j]);
  double total = 0.0;
  for (int64_t j = 0; j < m; ++j) {
    row[j] = row[j] >= thr ? std::exp(row[j] - mx) : 0.0;
    total += row[j];
  }
  const double a0 = w0 / total, a1 = w1 / total;
  for (int64_t j = 0; j < m; ++j) {
    acc0[j] += a0 * row[j];
    acc1[j] += a1 * row[j];
  }
}

// Load one row of scores of any input dtype into the acc_t buffer, applying scale and relu.
template <typename scalar_t, typename acc_t>
static inline void load_row(const scalar_t* src, acc_t* buf, int64_t m, acc_t scale, bool relu) {
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<acc_t, float>) {
    load_row_f32(src, buf, m, scale, relu);
  } else {
    for (int64_t j = 0; j < m; ++j) {
      const acc_t v = static_cast<acc_t>(src[j]) * scale;
      buf[j] = relu ? std::max(v, acc_t(0)) : v;
    }
  }
}

}  // namespace cpu
}  // namespace fss_attr
