// CUDA kernels shared by the two back-projection ops (docs/ops.md, "row rules"):
//   row_stats_kernel:  one block per row: the top-k threshold (radix select on order-preserving keys),
//                      then the row max and 1 / sum of exp over the kept entries;
//   column_kernel:     one thread per column j and chunk of rows: sum_q w_iq · p_qj, added atomically (versions 1)
//                      or written per chunk and reduced in order by reduce_partials_kernel (version 3,
//                      deterministic).
// Two passes over the scores (the second partly from L2). See docs/cuda_notes.md.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <limits>

namespace fss_attr {
namespace cuda {

constexpr int kThreads = 256;
constexpr int kRowsPerChunk = 32;

template <typename T>
__device__ __forceinline__ T lowest();
template <>
__device__ __forceinline__ float lowest<float>() { return -FLT_MAX; }
template <>
__device__ __forceinline__ double lowest<double>() { return -DBL_MAX; }

// Order-preserving maps between floats and unsigned keys (larger float <=> larger key).
__device__ __forceinline__ uint32_t to_key(float x) {
  const uint32_t b = __float_as_uint(x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float from_key(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}
__device__ __forceinline__ unsigned long long to_key(double x) {
  const unsigned long long b = static_cast<unsigned long long>(__double_as_longlong(x));
  return (b & 0x8000000000000000ull) ? ~b : (b | 0x8000000000000000ull);
}
__device__ __forceinline__ double from_key(unsigned long long k) {
  return __longlong_as_double(static_cast<long long>((k & 0x8000000000000000ull) ? (k & 0x7fffffffffffffffull) : ~k));
}

template <typename T>
struct KeyOf;
template <>
struct KeyOf<float> { using type = uint32_t; };
template <>
struct KeyOf<double> { using type = unsigned long long; };

struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a > b ? a : b; }
};
struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};

// Reduce over the block; every thread gets the result. `shared` holds kThreads / 32 values.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T* shared) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // `shared` may still be read by the previous reduction
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T r = shared[0];
  for (int w = 1; w < kThreads / 32; ++w) r = op(r, shared[w]);
  return r;
}

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t load_score(const scalar_t* s, int64_t j, acc_t scale, bool relu) {
  const acc_t v = static_cast<acc_t>(s[j]) * scale;
  return relu ? (v > acc_t(0) ? v : acc_t(0)) : v;
}

__device__ __forceinline__ float dev_exp(float x) { return expf(x); }
__device__ __forceinline__ double dev_exp(double x) { return exp(x); }

// Per row r of `scores` [rows, m]: thr[r] (lowest() when top-k is off), mx[r], inv_sum[r] (softmax only).
template <typename scalar_t, typename acc_t>
__global__ void row_stats_kernel(const scalar_t* __restrict__ scores, int64_t m, acc_t scale, bool relu, bool softmax,
                                 int64_t top_k, acc_t* __restrict__ thr, acc_t* __restrict__ mx,
                                 acc_t* __restrict__ inv_sum) {
  using key_t = typename KeyOf<acc_t>::type;
  __shared__ acc_t shared[kThreads / 32];
  __shared__ long long shared_count[kThreads / 32];
  const int64_t row = blockIdx.x;
  const scalar_t* s = scores + row * m;
  acc_t t = lowest<acc_t>();
  if (top_k > 0 && top_k < m) {
    // The k-th largest key, bit by bit from the top: the largest prefix with >= k keys at or above it.
    key_t prefix = 0;
    for (int bit = int(sizeof(key_t) * 8) - 1; bit >= 0; --bit) {
      const key_t cand = prefix | (key_t(1) << bit);
      long long count = 0;
      for (int64_t j = threadIdx.x; j < m; j += kThreads) count += to_key(load_score(s, j, scale, relu)) >= cand;
      count = block_reduce(count, SumOp(), shared_count);
      if (count >= top_k) prefix = cand;
    }
    t = from_key(prefix);
  }
  if (!softmax) {
    if (threadIdx.x == 0) thr[row] = t;
    return;
  }
  acc_t best = lowest<acc_t>();
  for (int64_t j = threadIdx.x; j < m; j += kThreads) {
    const acc_t v = load_score(s, j, scale, relu);
    if (v >= t && v > best) best = v;
  }
  best = block_reduce(best, MaxOp(), shared);
  acc_t total = 0;
  for (int64_t j = threadIdx.x; j < m; j += kThreads) {
    const acc_t v = load_score(s, j, scale, relu);
    if (v >= t) total += dev_exp(v - best);
  }
  total = block_reduce(total, SumOp(), shared);
  if (threadIdx.x == 0) {
    thr[row] = t;
    mx[row] = best;
    inv_sum[row] = acc_t(1) / total;
  }
}

// out0[j] += sum_r w0[r] p_rj, out1[j] += sum_r w1[r] p_rj over the rows of this block's chunk (rows_per_chunk
// rows from blockIdx.y · rows_per_chunk). With `partials` == nullptr the chunk's sums are added atomically
// (float atomics: the order of the additions, hence the last bits, varies from run to run); otherwise chunk c
// writes partials[c, 0, j] and partials[c, 1, j] ([chunks, 2, m]) and reduce_partials_kernel adds them in order.
template <typename scalar_t, typename acc_t>
__global__ void column_kernel(const scalar_t* __restrict__ scores, int64_t rows, int64_t m, int64_t rows_per_chunk,
                              acc_t scale, bool relu, bool softmax, const acc_t* __restrict__ w0,
                              const acc_t* __restrict__ w1, const acc_t* __restrict__ thr,
                              const acc_t* __restrict__ mx, const acc_t* __restrict__ inv_sum,
                              acc_t* __restrict__ out0, acc_t* __restrict__ out1, acc_t* __restrict__ partials) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (j >= m) return;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  acc_t a0 = 0, a1 = 0;
  for (int64_t r = r0; r < r1; ++r) {
    const acc_t v = load_score(scores + r * m, j, scale, relu);
    if (v >= thr[r]) {
      const acc_t p = softmax ? dev_exp(v - mx[r]) * inv_sum[r] : v;
      a0 += w0[r] * p;
      a1 += w1[r] * p;
    }
  }
  if (partials == nullptr) {
    atomicAdd(out0 + j, a0);
    atomicAdd(out1 + j, a1);
  } else {
    partials[(2 * static_cast<int64_t>(blockIdx.y)) * m + j] = a0;
    partials[(2 * static_cast<int64_t>(blockIdx.y) + 1) * m + j] = a1;
  }
}

// out0[j] += sum_c partials[c, 0, j], out1[j] += sum_c partials[c, 1, j], c = 0, 1, ... in order: deterministic.
template <typename acc_t>
__global__ void reduce_partials_kernel(const acc_t* __restrict__ partials, int64_t chunks, int64_t m,
                                       acc_t* __restrict__ out0, acc_t* __restrict__ out1) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (j >= m) return;
  acc_t a0 = out0[j], a1 = out1[j];
  for (int64_t c = 0; c < chunks; ++c) {
    a0 += partials[(2 * c) * m + j];
    a1 += partials[(2 * c + 1) * m + j];
  }
  out0[j] = a0;
  out1[j] = a1;
}

// Chunks of rows per launch of the deterministic column sums: bounds the partials to kDeterministicChunks · 2 · m.
constexpr int64_t kDeterministicChunks = 64;

// Accumulate the rows [rows, m] of `scores` (one episode) into out0/out1 [m], with row weights w0/w1 [rows].
// `stats` holds 3 · rows values. `partials` == nullptr: atomic column sums (the caller has called
// at::globalContext().alertNotDeterministic); else the deterministic column sums, with `partials` holding
// kDeterministicChunks · 2 · m values.
template <typename scalar_t, typename acc_t>
void accumulate_rows(const scalar_t* scores, int64_t rows, int64_t m, acc_t scale, bool relu, bool softmax,
                     int64_t top_k, const acc_t* w0, const acc_t* w1, acc_t* out0, acc_t* out1, acc_t* stats,
                     acc_t* partials) {
  if (rows == 0 || m == 0) return;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  acc_t* thr = stats;
  acc_t* mx = stats + rows;
  acc_t* inv_sum = stats + 2 * rows;
  row_stats_kernel<scalar_t, acc_t><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      scores, m, scale, relu, softmax, top_k, thr, mx, inv_sum);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t rows_per_chunk =
      partials == nullptr ? kRowsPerChunk
                          : std::max<int64_t>(kRowsPerChunk, (rows + kDeterministicChunks - 1) / kDeterministicChunks);
  const int64_t chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  const dim3 grid(static_cast<unsigned>((m + kThreads - 1) / kThreads), static_cast<unsigned>(chunks));
  TORCH_CHECK(chunks <= 65535, "fss_attr CUDA: too many query rows in one launch (", rows, ")");
  column_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(scores, rows, m, rows_per_chunk, scale, relu, softmax,
                                                                 w0, w1, thr, mx, inv_sum, out0, out1, partials);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (partials != nullptr) {
    reduce_partials_kernel<acc_t><<<grid.x, kThreads, 0, stream>>>(partials, chunks, m, out0, out1);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

}  // namespace cuda
}  // namespace fss_attr
