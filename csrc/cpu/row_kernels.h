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

#include "cpu_paths.h"

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

// Row -> its probabilities up to the returned factor, in place, by plain scalar loops (std::exp, a double sum):
// the float64 path, and the float32 path of kernel version 1.
template <typename acc_t>
static inline double prepare_row_scalar(acc_t* row, int64_t m, bool softmax, int64_t top_k, acc_t* select) {
  const bool thresholded = top_k > 0 && top_k < m;
  const acc_t ninf = -std::numeric_limits<acc_t>::infinity();
  const acc_t thr = thresholded ? kth_largest(row, m, top_k, select) : ninf;
  if (!softmax) {
    if (thresholded)
      for (int64_t j = 0; j < m; ++j) row[j] = row[j] >= thr ? row[j] : acc_t(0);
    return 1.0;
  }
  acc_t mx = ninf;
  for (int64_t j = 0; j < m; ++j)
    if (row[j] >= thr) mx = std::max(mx, row[j]);
  double total = 0.0;
  for (int64_t j = 0; j < m; ++j) {
    row[j] = row[j] >= thr ? std::exp(row[j] - mx) : acc_t(0);
    total += row[j];
  }
  return 1.0 / total;
}

// Row -> its probabilities up to the returned factor, in place: the vectorised float32 loops
// (prepare_row_f32), the scalar loops for float64.
static inline double prepare_row(float* row, int64_t m, bool softmax, int64_t top_k, float* select) {
  return prepare_row_f32(row, m, softmax, top_k, select);
}

static inline double prepare_row(double* row, int64_t m, bool softmax, int64_t top_k, double* select) {
  return prepare_row_scalar(row, m, softmax, top_k, select);
}

// Rows accumulated per pass over the column sums: the accumulators are read and written once per
// kRowGroup rows instead of once per row.
constexpr int kRowGroup = 4;

// acc0[j] += sum_r a0[r]·p[r][j], acc1[j] += sum_r a1[r]·p[r][j] for r < kRowGroup.
template <typename acc_t>
static void axpy2_rows(const acc_t* const* p, const acc_t* a0, const acc_t* a1, int64_t m, acc_t* __restrict acc0,
                       acc_t* __restrict acc1) {
  const acc_t* __restrict p0 = p[0];
  const acc_t* __restrict p1 = p[1];
  const acc_t* __restrict p2 = p[2];
  const acc_t* __restrict p3 = p[3];
  static_assert(kRowGroup == 4, "axpy2_rows is written for groups of 4 rows");
  for (int64_t j = 0; j < m; ++j) {
    acc0[j] += a0[0] * p0[j] + a0[1] * p1[j] + a0[2] * p2[j] + a0[3] * p3[j];
    acc1[j] += a1[0] * p0[j] + a1[1] * p1[j] + a1[2] * p2[j] + a1[3] * p3[j];
  }
}

// acc0[j] += a0·p[j], acc1[j] += a1·p[j]: one row (kernel version 1).
template <typename acc_t>
static void axpy2_row(const acc_t* __restrict p, acc_t a0, acc_t a1, int64_t m, acc_t* __restrict acc0,
                      acc_t* __restrict acc1) {
  for (int64_t j = 0; j < m; ++j) {
    acc0[j] += a0 * p[j];
    acc1[j] += a1 * p[j];
  }
}

// Per-thread buffers: kRowGroup rows and the top-k selection scratch.
template <typename acc_t>
struct RowScratch {
  std::vector<acc_t> rows, select;
  int64_t m;
  RowScratch(int64_t m, bool need_select) : rows(kRowGroup * m), select(need_select ? m : 0), m(m) {}
  acc_t* row(int r) { return rows.data() + r * m; }
};

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
