// backproject_scores on CUDA, version 2: one pass that reads the scores once (docs/cuda_notes.md).
//
// A block of kOnePassThreads threads owns whole rows of the scores: thread t holds the values of columns
// t, t + kOnePassThreads, ... (VPT of them) in registers. Per row: the top-k threshold (radix select over the
// register values), each thread's softmax partial (max m_t and z_t = sum exp(x - m_t) over its kept values),
// one block-wide combination of the partials into the row's (max, sum), and the accumulation of
// w·exp(x - m_t)·exp(m_t - max)/sum into per-thread column sums. The next row's values are loaded while the
// current one is processed. Blocks stride over rows; at the end every block adds its column sums to the output
// with one atomicAdd per column. Float32 accumulation; float32, float16 and bfloat16 scores; M <= kOnePassThreads
// * kMaxValuesPerThread (larger M and float64 use version 1, row_kernels.cuh).
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <cfloat>
#include <cstdint>

#include "row_kernels.cuh"

namespace fss_attr {
namespace cuda {

constexpr int kOnePassThreads = 512;
constexpr int kMaxValuesPerThread = 24;

// (m, z) <- the softmax partial of the union of (m, z) and (m2, z2). Empty partials are (-FLT_MAX, 0).
__device__ __forceinline__ void combine_partial(float& m, float& z, float m2, float z2) {
  const float mx = fmaxf(m, m2);
  z = z * expf(m - mx) + z2 * expf(m2 - mx);
  m = mx;
}

// Block-wide combination of every thread's (m, z); every thread gets the result. `shared` holds 2 floats per warp.
__device__ __forceinline__ void block_combine_partials(float& m, float& z, float* shared) {
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float z2 = __shfl_xor_sync(0xffffffffu, z, o);
    combine_partial(m, z, m2, z2);
  }
  constexpr int warps = kOnePassThreads / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // the previous row's readers are done with `shared`
  if (lane == 0) {
    shared[2 * warp] = m;
    shared[2 * warp + 1] = z;
  }
  __syncthreads();
  m = shared[0];
  z = shared[1];
  for (int w = 1; w < warps; ++w) combine_partial(m, z, shared[2 * w], shared[2 * w + 1]);
}

// Block-wide sum of a count; every thread gets the result.
__device__ __forceinline__ int block_count(int c, int* shared) {
  for (int o = 16; o > 0; o >>= 1) c += __shfl_xor_sync(0xffffffffu, c, o);
  constexpr int warps = kOnePassThreads / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) shared[warp] = c;
  __syncthreads();
  int total = 0;
  for (int w = 0; w < warps; ++w) total += shared[w];
  return total;
}

// The k-th largest of the block's valid register values (ties kept by the caller's >= test): the largest
// key prefix, bit by bit from the top, with at least k keys at or above it.
template <int VPT>
__device__ float block_kth_largest(const float (&x)[VPT], int valid, int64_t k, int* shared) {
  uint32_t keys[VPT];
#pragma unroll
  for (int v = 0; v < VPT; ++v) keys[v] = to_key(x[v]);
  uint32_t prefix = 0;
  for (int bit = 31; bit >= 0; --bit) {
    const uint32_t cand = prefix | (1u << bit);
    int c = 0;
#pragma unroll
    for (int v = 0; v < VPT; ++v) c += (v < valid && keys[v] >= cand) ? 1 : 0;
    if (block_count(c, shared) >= k) prefix = cand;
  }
  return from_key(prefix);
}

template <typename scalar_t, int VPT>
__device__ __forceinline__ void load_row_values(const scalar_t* __restrict__ row, int64_t m, float (&x)[VPT]) {
#pragma unroll
  for (int v = 0; v < VPT; ++v) {
    const int64_t j = threadIdx.x + int64_t(v) * kOnePassThreads;
    x[v] = j < m ? static_cast<float>(row[j]) : -FLT_MAX;
  }
}

// scores [q, m] of one episode; w0, w1 [q]; out0, out1 [m] (zeroed by the caller, added to atomically).
template <typename scalar_t, int VPT>
__global__ void __launch_bounds__(kOnePassThreads) scores_onepass_kernel(
    const scalar_t* __restrict__ scores, int64_t q, int64_t m, bool softmax, int64_t top_k,
    const float* __restrict__ w0, const float* __restrict__ w1, float* __restrict__ out0,
    float* __restrict__ out1) {
  __shared__ float shared_partials[2 * (kOnePassThreads / 32)];
  __shared__ int shared_counts[kOnePassThreads / 32];
  // How many of this thread's VPT slots hold a column (j < m).
  const int64_t remaining = m - threadIdx.x;
  const int64_t slots = (remaining + kOnePassThreads - 1) / kOnePassThreads;
  const int valid = remaining <= 0 ? 0 : static_cast<int>(slots < VPT ? slots : VPT);
  const bool thresholded = top_k > 0 && top_k < m;

  float acc0[VPT], acc1[VPT], cur[VPT], nxt[VPT];
#pragma unroll
  for (int v = 0; v < VPT; ++v) acc0[v] = acc1[v] = 0.0f;
  int64_t row = blockIdx.x;
  if (row < q) load_row_values<scalar_t, VPT>(scores + row * m, m, cur);
  for (; row < q; row += gridDim.x) {
    const int64_t next = row + gridDim.x;
    if (next < q) load_row_values<scalar_t, VPT>(scores + next * m, m, nxt);

    const float thr = thresholded ? block_kth_largest<VPT>(cur, valid, top_k, shared_counts) : -FLT_MAX;
    float a0 = w0[row], a1 = w1[row];
    if (softmax) {
      float mt = -FLT_MAX;
#pragma unroll
      for (int v = 0; v < VPT; ++v)
        if (v < valid && cur[v] >= thr) mt = fmaxf(mt, cur[v]);
      float zt = 0.0f;
#pragma unroll
      for (int v = 0; v < VPT; ++v) {
        const float e = (v < valid && cur[v] >= thr) ? expf(cur[v] - mt) : 0.0f;
        cur[v] = e;
        zt += e;
      }
      float mx = mt, total = zt;
      block_combine_partials(mx, total, shared_partials);
      const float factor = expf(mt - mx) / total;  // 0 for a thread with nothing kept (mt = -FLT_MAX)
      a0 *= factor;
      a1 *= factor;
    } else {
#pragma unroll
      for (int v = 0; v < VPT; ++v) cur[v] = (v < valid && cur[v] >= thr) ? cur[v] : 0.0f;
    }
#pragma unroll
    for (int v = 0; v < VPT; ++v) {
      acc0[v] = fmaf(a0, cur[v], acc0[v]);
      acc1[v] = fmaf(a1, cur[v], acc1[v]);
    }
#pragma unroll
    for (int v = 0; v < VPT; ++v) cur[v] = nxt[v];
  }
#pragma unroll
  for (int v = 0; v < VPT; ++v) {
    const int64_t j = threadIdx.x + int64_t(v) * kOnePassThreads;
    if (v < valid && blockIdx.x < q) {
      atomicAdd(out0 + j, acc0[v]);
      atomicAdd(out1 + j, acc1[v]);
    }
  }
}

// Whether version 2 handles scores of this dtype and row length.
inline bool onepass_supports(at::ScalarType dtype, int64_t m) {
  return dtype != at::kDouble && m <= int64_t(kOnePassThreads) * kMaxValuesPerThread;
}

template <typename scalar_t, int VPT>
void launch_onepass(const scalar_t* scores, int64_t q, int64_t m, bool softmax, int64_t top_k, const float* w0,
                    const float* w1, float* out0, float* out1) {
  static const int per_sm = [] {
    int blocks = 0;
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, scores_onepass_kernel<scalar_t, VPT>,
                                                                 kOnePassThreads, 0));
    return blocks;
  }();
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(q, int64_t(std::max(per_sm, 1)) * sms));
  scores_onepass_kernel<scalar_t, VPT><<<static_cast<unsigned>(blocks), kOnePassThreads, 0,
                                         at::cuda::getCurrentCUDAStream()>>>(scores, q, m, softmax, top_k, w0, w1,
                                                                             out0, out1);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// One episode's rows: scores [q, m], weights w0/w1 [q] -> out0/out1 [m] (added to). Needs onepass_supports.
template <typename scalar_t>
void accumulate_rows_onepass(const scalar_t* scores, int64_t q, int64_t m, bool softmax, int64_t top_k,
                             const float* w0, const float* w1, float* out0, float* out1) {
  if (q == 0 || m == 0) return;
  const int64_t vpt = (m + kOnePassThreads - 1) / kOnePassThreads;
  if (vpt <= 1) launch_onepass<scalar_t, 1>(scores, q, m, softmax, top_k, w0, w1, out0, out1);
  else if (vpt <= 2) launch_onepass<scalar_t, 2>(scores, q, m, softmax, top_k, w0, w1, out0, out1);
  else if (vpt <= 4) launch_onepass<scalar_t, 4>(scores, q, m, softmax, top_k, w0, w1, out0, out1);
  else if (vpt <= 8) launch_onepass<scalar_t, 8>(scores, q, m, softmax, top_k, w0, w1, out0, out1);
  else if (vpt <= 16) launch_onepass<scalar_t, 16>(scores, q, m, softmax, top_k, w0, w1, out0, out1);
  else launch_onepass<scalar_t, kMaxValuesPerThread>(scores, q, m, softmax, top_k, w0, w1, out0, out1);
}

}  // namespace cuda
}  // namespace fss_attr
