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

// Checks of backproject_scores' inputs; `device` is "CPU" or "CUDA", the kernel's device type.
inline void check_scores_inputs(const at::Tensor& scores, const at::Tensor& weights, int64_t top_k,
                                at::DeviceType device) {
  check_rank(scores, 3, "scores", "[B, Q, M]");
  check_floating(scores, "scores");
  TORCH_CHECK(scores.device().type() == device, "scores must be a ", device, " tensor for this kernel, got ",
              scores.device());
  TORCH_CHECK(scores.is_contiguous(), "scores must be contiguous");
  check_top_k(top_k);
  check_weights(weights, scores.size(0), scores.size(1), acc_type_of(scores.scalar_type()), scores);
}

// Checks of backproject_features' inputs; returns whether the similarity is cosine.
inline bool check_features_inputs(const at::Tensor& query, const at::Tensor& support, const at::Tensor& weights,
                                  const std::string& similarity, int64_t top_k, at::DeviceType device) {
  check_rank(query, 3, "query", "[B, Q, D]");
  check_rank(support, 3, "support", "[B, M, D]");
  check_floating(query, "query");
  TORCH_CHECK(support.scalar_type() == query.scalar_type(), "support must have the dtype of query (",
              query.scalar_type(), "), got ", support.scalar_type());
  TORCH_CHECK(query.device().type() == device, "query must be a ", device, " tensor for this kernel, got ",
              query.device());
  check_same_device(query, support, "query", "support");
  TORCH_CHECK(query.is_contiguous() && support.is_contiguous(), "query and support must be contiguous");
  TORCH_CHECK(support.size(0) == query.size(0), "support has batch size ", support.size(0), ", query has ",
              query.size(0));
  TORCH_CHECK(support.size(2) == query.size(2), "support has feature size D=", support.size(2), ", query has D=",
              query.size(2));
  check_top_k(top_k);
  check_weights(weights, query.size(0), query.size(1), acc_type_of(query.scalar_type()), query);
  return is_cosine(similarity);
}

// x / max(||x||, 1e-8) along the last dimension (the cosine normalisation of docs/ops.md).
inline at::Tensor normalize_last(const at::Tensor& x) {
  return x / x.norm(2, {-1}, /*keepdim=*/true).clamp_min(1e-8);
}

}  // namespace fss_attr
