// Shared, header-only helpers of the fss_attr kernels (no CUDA code here).
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace fss_attr {

// The accumulation dtype: float64 for float64 inputs, float32 for float32, float16 and bfloat16.
inline at::ScalarType acc_type_of(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble || t.scalar_type() == at::kHalf ||
                  t.scalar_type() == at::kBFloat16,
              name, " must be float32, float64, float16 or bfloat16, got ", t.scalar_type());
}

inline void check_rank(const at::Tensor& t, int64_t rank, const char* name, const char* layout) {
  TORCH_CHECK(t.dim() == rank, name, " must be ", layout, " (", rank, " dimensions), got shape ", t.sizes());
}

inline void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* name_a, const char* name_b) {
  TORCH_CHECK(a.device() == b.device(), name_a, " and ", name_b, " must be on the same device, got ", a.device(),
              " and ", b.device());
}

inline void check_top_k(int64_t top_k) {
  TORCH_CHECK(top_k >= 0, "top_k must be >= 0 (0 turns top-k off), got ", top_k);
}

inline bool is_cosine(const std::string& similarity) {
  TORCH_CHECK(similarity == "dot" || similarity == "cosine", "similarity must be 'dot' or 'cosine', got '",
              similarity, "'");
  return similarity == "cosine";
}

// Checks shared by both back-projection ops: weights [B, 2, Q] of the accumulation dtype.
inline void check_weights(const at::Tensor& weights, int64_t b, int64_t q, at::ScalarType acc, const at::Tensor& ref) {
  check_rank(weights, 3, "weights", "[B, 2, Q]");
  TORCH_CHECK(weights.size(0) == b && weights.size(1) == 2 && weights.size(2) == q, "weights must have shape [", b,
              ", 2, ", q, "], got ", weights.sizes());
  TORCH_CHECK(weights.scalar_type() == acc, "weights must have dtype ", acc, " (the accumulation dtype), got ",
              weights.scalar_type());
  check_same_device(weights, ref, "weights", "the scores/features");
  TORCH_CHECK(weights.is_contiguous(), "weights must be contiguous");
}

// x / max(||x||, 1e-8) along the last dimension (the cosine normalisation of docs/ops.md).
inline at::Tensor normalize_last(const at::Tensor& x) {
  return x / x.norm(2, {-1}, /*keepdim=*/true).clamp_min(1e-8);
}

}  // namespace fss_attr
