// backproject_features on CUDA, version 2: flash-attention style, the score matrix is never stored
// (docs/cuda_notes.md). Memory: O(B·(Q + M)) floats plus per-block tiles.
//
//   pass 1 (row_stats_pass):   a block per (64-row tile, column split); it walks its column tiles, computes each
//                              64×64 score tile, and keeps per-thread online softmax partials (max, sum of exp)
//                              of its rows; the 4 threads of a row combine theirs and write one partial per split.
//   combine_row_stats:         the splits' partials of a row -> its max and 1 / sum.
//   pass 2 (column_pass):      a block per (64-column tile, row split); it walks its row tiles, recomputes each
//                              score tile and accumulates w0·p and w1·p into the tile's 64 columns; one
//                              atomicAdd per column and split at the end.
//
// A score tile is Q_tile [64, D] · K_tileᵀ [D, 64], staged through shared memory in chunks of 32 features:
// tensor-core WMMA (16×16×16, float32 accumulation) for float16/bfloat16 features — exact products of the given
// half-precision values, summed in float32 — and FMA in float32 for float32 features (matches the CPU kernels).
// Then scale, cosine (inverse norms of the rows and columns, precomputed), relu. Top-k and float64 use version 1.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cfloat>
#include <cstdint>

namespace fss_attr {
namespace cuda {
namespace flash {

constexpr int kTile = 64;      // rows and columns of a score tile
constexpr int kChunk = 32;     // features staged per step
constexpr int kThreads = 256;  // 8 warps
constexpr int kPitch = kTile + 4;  // float pitch of the score tile in shared memory (a multiple of 4 for WMMA)

// Everything a tile needs to know about one episode.
struct Problem {
  int64_t q, m, d;
  float scale;
  bool relu;
  const float* inv_norm_q;  // [q] or nullptr (dot)
  const float* inv_norm_k;  // [m] or nullptr
};

__device__ __forceinline__ float score_of(float dot, const Problem& p, int64_t r, int64_t j) {
  float s = dot * p.scale;
  if (p.inv_norm_q != nullptr) s *= p.inv_norm_q[r] * p.inv_norm_k[j];
  return p.relu ? fmaxf(s, 0.0f) : s;
}

// ---- score tiles: S[64][kPitch] (shared) = dot products of rows [r0, r0+64) of q and [c0, c0+64) of k ----

// Float32 features: thread (ty, tx) of a 16×16 grid computes a 4×4 block of the tile by FMA.
struct SimtTile {
  struct Staging {
    float q[kChunk][kTile + 1];
    float k[kChunk][kTile + 1];
  };

  __device__ static void compute(const float* __restrict__ q, const float* __restrict__ k, const Problem& p,
                                 int64_t r0, int64_t c0, Staging& st, float (*S)[kPitch]) {
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    float acc[4][4] = {};
    for (int64_t d0 = 0; d0 < p.d; d0 += kChunk) {
      for (int e = threadIdx.x; e < kTile * kChunk; e += kThreads) {
        const int row = e / kChunk, dd = e % kChunk;
        const bool in_d = d0 + dd < p.d;
        st.q[dd][row] = (in_d && r0 + row < p.q) ? q[(r0 + row) * p.d + d0 + dd] : 0.0f;
        st.k[dd][row] = (in_d && c0 + row < p.m) ? k[(c0 + row) * p.d + d0 + dd] : 0.0f;
      }
      __syncthreads();
#pragma unroll 8
      for (int dd = 0; dd < kChunk; ++dd) {
        float a[4], b[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          a[i] = st.q[dd][ty * 4 + i];
          b[i] = st.k[dd][tx * 4 + i];
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) S[ty * 4 + i][tx * 4 + j] = acc[i][j];
    __syncthreads();
  }
};

template <typename half_t>
__device__ __forceinline__ half_t zero_of();
template <>
__device__ __forceinline__ __half zero_of<__half>() { return __ushort_as_half(0); }
template <>
__device__ __forceinline__ __nv_bfloat16 zero_of<__nv_bfloat16>() { return __ushort_as_bfloat16(0); }

// Float16 / bfloat16 features on tensor cores: warp w computes the 16×16 fragments (w / 2, 2·(w % 2) + {0, 1}).
template <typename half_t>
struct WmmaTile {
  static constexpr int kHalfPitch = kChunk + 8;  // a multiple of 8 halves, as WMMA loads require
  struct __align__(32) Staging {  // WMMA loads need 32-byte aligned rows
    half_t q[kTile][kHalfPitch];
    half_t k[kTile][kHalfPitch];
  };

  __device__ static void compute(const half_t* __restrict__ q, const half_t* __restrict__ k, const Problem& p,
                                 int64_t r0, int64_t c0, Staging& st, float (*S)[kPitch]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    using namespace nvcuda;
    const int warp = threadIdx.x / 32;
    const int fr = warp / 2, fc = 2 * (warp % 2);
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2];
    wmma::fill_fragment(acc[0], 0.0f);
    wmma::fill_fragment(acc[1], 0.0f);
    const half_t zero = zero_of<half_t>();
    for (int64_t d0 = 0; d0 < p.d; d0 += kChunk) {
      for (int e = threadIdx.x; e < kTile * kChunk; e += kThreads) {
        const int row = e / kChunk, dd = e % kChunk;
        const bool in_d = d0 + dd < p.d;
        st.q[row][dd] = (in_d && r0 + row < p.q) ? q[(r0 + row) * p.d + d0 + dd] : zero;
        st.k[row][dd] = (in_d && c0 + row < p.m) ? k[(c0 + row) * p.d + d0 + dd] : zero;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kChunk; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, half_t, wmma::row_major> a;
        wmma::load_matrix_sync(a, &st.q[fr * 16][kk], kHalfPitch);
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          // B = Kᵀ: B(kk, n) = k[n][kk], i.e. the staged K rows read as a column-major matrix.
          wmma::fragment<wmma::matrix_b, 16, 16, 16, half_t, wmma::col_major> b;
          wmma::load_matrix_sync(b, &st.k[(fc + c) * 16][kk], kHalfPitch);
          wmma::mma_sync(acc[c], a, b, acc[c]);
        }
      }
      __syncthreads();
    }
    wmma::store_matrix_sync(&S[fr * 16][fc * 16], acc[0], kPitch, wmma::mem_row_major);
    wmma::store_matrix_sync(&S[fr * 16][(fc + 1) * 16], acc[1], kPitch, wmma::mem_row_major);
    __syncthreads();
#else
    __trap();  // the host never launches this below compute capability 8.0 (see flash_supports)
#endif
  }
};

template <typename in_t>
struct TileOf {
  using type = SimtTile;
};
template <>
struct TileOf<__half> {
  using type = WmmaTile<__half>;
};
template <>
struct TileOf<__nv_bfloat16> {
  using type = WmmaTile<__nv_bfloat16>;
};

// ---- pass 1: per (row tile, column split) softmax partials of each row ----
// part_m, part_z: [splits, q]. Thread t serves row t / 4 of the tile and its columns (t % 4)·16 .. +16.
template <typename in_t>
__global__ void __launch_bounds__(kThreads) row_stats_pass(const in_t* __restrict__ q, const in_t* __restrict__ k,
                                                           Problem p, int64_t tiles_per_split,
                                                           float* __restrict__ part_m, float* __restrict__ part_z) {
  using Tile = typename TileOf<in_t>::type;
  __shared__ typename Tile::Staging staging;
  __shared__ __align__(32) float S[kTile][kPitch];
  const int64_t r0 = int64_t(blockIdx.x) * kTile;
  const int64_t split = blockIdx.y;
  const int64_t n_tiles = (p.m + kTile - 1) / kTile;
  const int64_t t0 = split * tiles_per_split;
  const int64_t t1 = t0 + tiles_per_split < n_tiles ? t0 + tiles_per_split : n_tiles;
  const int lr = threadIdx.x / 4, part = threadIdx.x % 4;
  const int64_t r = r0 + lr;
  float mt = -FLT_MAX, zt = 0.0f;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t c0 = t * kTile;
    Tile::compute(q, k, p, r0, c0, staging, S);
    if (r < p.q) {
      float s[16];
      float lmax = -FLT_MAX;
#pragma unroll
      for (int c = 0; c < 16; ++c) {
        const int64_t j = c0 + part * 16 + c;
        s[c] = j < p.m ? score_of(S[lr][part * 16 + c], p, r, j) : -FLT_MAX;
        lmax = fmaxf(lmax, s[c]);
      }
      if (lmax > -FLT_MAX) {
        const float nm = fmaxf(mt, lmax);
        float sum = 0.0f;
#pragma unroll
        for (int c = 0; c < 16; ++c) sum += (c0 + part * 16 + c < p.m) ? expf(s[c] - nm) : 0.0f;
        zt = zt * expf(mt - nm) + sum;
        mt = nm;
      }
    }
    __syncthreads();  // S is overwritten by the next tile
  }
  // Combine the 4 threads of the row (consecutive lanes).
  for (int o = 1; o < 4; o <<= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, mt, o);
    const float z2 = __shfl_xor_sync(0xffffffffu, zt, o);
    const float mx = fmaxf(mt, m2);
    zt = zt * expf(mt - mx) + z2 * expf(m2 - mx);
    mt = mx;
  }
  if (part == 0 && r < p.q) {
    part_m[split * p.q + r] = mt;
    part_z[split * p.q + r] = zt;
  }
}

// row_max[r], row_inv_sum[r] from the splits' partials [splits, q]. (A template only so that the header can be
// included by several translation units.)
template <int = 0>
__global__ void combine_row_stats(const float* __restrict__ part_m, const float* __restrict__ part_z, int64_t q,
                                  int64_t splits, float* __restrict__ row_max, float* __restrict__ row_inv_sum) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= q) return;
  float mx = -FLT_MAX;
  for (int64_t s = 0; s < splits; ++s) mx = fmaxf(mx, part_m[s * q + r]);
  float z = 0.0f;
  for (int64_t s = 0; s < splits; ++s) z += part_z[s * q + r] * expf(part_m[s * q + r] - mx);
  row_max[r] = mx;
  row_inv_sum[r] = 1.0f / z;
}

// ---- pass 2: per (column tile, row split) column sums ----
// Thread t serves column t % 64 of the tile and rows (t / 64)·16 .. +16. Without softmax, p = score and the row
// statistics are unused (nullptr).
template <typename in_t>
__global__ void __launch_bounds__(kThreads) column_pass(const in_t* __restrict__ q, const in_t* __restrict__ k,
                                                        Problem p, bool softmax, int64_t tiles_per_split,
                                                        const float* __restrict__ row_max,
                                                        const float* __restrict__ row_inv_sum,
                                                        const float* __restrict__ w0, const float* __restrict__ w1,
                                                        float* __restrict__ out0, float* __restrict__ out1) {
  using Tile = typename TileOf<in_t>::type;
  __shared__ typename Tile::Staging staging;
  __shared__ __align__(32) float S[kTile][kPitch];
  __shared__ float rows_w0[kTile], rows_w1[kTile], rows_max[kTile], rows_inv[kTile];
  __shared__ float partial[2][kThreads];
  const int64_t c0 = int64_t(blockIdx.x) * kTile;
  const int64_t split = blockIdx.y;
  const int64_t n_tiles = (p.q + kTile - 1) / kTile;
  const int64_t t0 = split * tiles_per_split;
  const int64_t t1 = t0 + tiles_per_split < n_tiles ? t0 + tiles_per_split : n_tiles;
  const int lc = threadIdx.x % kTile, group = threadIdx.x / kTile;
  const int64_t j = c0 + lc;
  float a0 = 0.0f, a1 = 0.0f;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t r0 = t * kTile;
    if (threadIdx.x < kTile) {
      const int64_t r = r0 + threadIdx.x;
      const bool in = r < p.q;
      rows_w0[threadIdx.x] = in ? w0[r] : 0.0f;
      rows_w1[threadIdx.x] = in ? w1[r] : 0.0f;
      rows_max[threadIdx.x] = (in && softmax) ? row_max[r] : 0.0f;
      rows_inv[threadIdx.x] = (in && softmax) ? row_inv_sum[r] : 0.0f;
    }
    Tile::compute(q, k, p, r0, c0, staging, S);  // ends with __syncthreads(), so the row arrays are visible
    if (j < p.m) {
#pragma unroll 4
      for (int i = group * 16; i < group * 16 + 16; ++i) {
        const int64_t r = r0 + i;
        if (r >= p.q) break;
        const float s = score_of(S[i][lc], p, r, j);
        const float prob = softmax ? expf(s - rows_max[i]) * rows_inv[i] : s;
        a0 = fmaf(rows_w0[i], prob, a0);
        a1 = fmaf(rows_w1[i], prob, a1);
      }
    }
    __syncthreads();  // S and the row arrays are overwritten by the next tile
  }
  partial[0][threadIdx.x] = a0;
  partial[1][threadIdx.x] = a1;
  __syncthreads();
  if (group == 0 && j < p.m) {
    float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
    for (int g = 0; g < kThreads / kTile; ++g) {
      s0 += partial[0][g * kTile + lc];
      s1 += partial[1][g * kTile + lc];
    }
    atomicAdd(out0 + j, s0);
    atomicAdd(out1 + j, s1);
  }
}

// Whether version 2 runs these features here: float32 always; float16/bfloat16 when the loaded kernel image
// holds the tensor-core code (built for compute capability >= 8.0; a PTX image of an older target would trap).
inline bool flash_supports(at::ScalarType dtype, int64_t top_k, int64_t m) {
  if (top_k > 0 && top_k < m) return false;
  if (dtype == at::kFloat) return true;
  if (dtype == at::kHalf || dtype == at::kBFloat16) {
    cudaFuncAttributes attributes;
    C10_CUDA_CHECK(cudaFuncGetAttributes(&attributes, row_stats_pass<__half>));
    return attributes.ptxVersion >= 80 && attributes.binaryVersion >= 80;
  }
  return false;
}

// Tiles per block when `n_tiles` tiles are split over blocks, so that about two waves of blocks fill the
// device together with the `other_blocks` blocks of the other grid dimension.
inline int64_t tiles_per_split(int64_t n_tiles, int64_t other_blocks) {
  const int64_t target = 2 * int64_t(at::cuda::getCurrentDeviceProperties()->multiProcessorCount);
  const int64_t splits = std::max<int64_t>(1, std::min<int64_t>(n_tiles, target / std::max<int64_t>(other_blocks, 1)));
  return (n_tiles + splits - 1) / splits;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Floats of workspace that accumulate() needs for one episode of q query rows and m support columns.
inline int64_t workspace_floats(int64_t q, int64_t m) {
  const int64_t row_tiles = ceil_div(q, kTile), col_tiles = ceil_div(m, kTile);
  const int64_t splits = ceil_div(col_tiles, tiles_per_split(col_tiles, row_tiles));
  return 2 * splits * q + 2 * q;
}

// One episode: q [Q, D], k [M, D] of in_t; w0, w1 [Q]; out0, out1 [M] float (zeroed, added to).
// `workspace` holds workspace_floats(Q, M) floats.
template <typename in_t>
void accumulate(const in_t* q, const in_t* k, const Problem& p, bool softmax, const float* w0, const float* w1,
                float* out0, float* out1, float* workspace) {
  if (p.q == 0 || p.m == 0) return;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t row_tiles = ceil_div(p.q, kTile), col_tiles = ceil_div(p.m, kTile);
  float* row_max = nullptr;
  float* row_inv = nullptr;
  if (softmax) {
    const int64_t per_split = tiles_per_split(col_tiles, row_tiles);
    const int64_t splits = ceil_div(col_tiles, per_split);
    float* part_m = workspace;
    float* part_z = part_m + splits * p.q;
    row_max = part_z + splits * p.q;
    row_inv = row_max + p.q;
    row_stats_pass<in_t><<<dim3(unsigned(row_tiles), unsigned(splits)), kThreads, 0, stream>>>(q, k, p, per_split,
                                                                                               part_m, part_z);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    combine_row_stats<><<<unsigned((p.q + 255) / 256), 256, 0, stream>>>(part_m, part_z, p.q, splits, row_max,
                                                                       row_inv);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const int64_t per_split = tiles_per_split(row_tiles, col_tiles);
  const int64_t splits = ceil_div(row_tiles, per_split);
  column_pass<in_t><<<dim3(unsigned(col_tiles), unsigned(splits)), kThreads, 0, stream>>>(
      q, k, p, softmax, per_split, row_max, row_inv, w0, w1, out0, out1);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace flash
}  // namespace cuda
}  // namespace fss_attr
