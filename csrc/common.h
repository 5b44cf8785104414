// Shared, header-only helpers of the fss_attr kernels (no CUDA code here).
//
// The argument checks below raise c10::Error (Python RuntimeError) with the messages that the Python wrappers
// and the fake kernels raise too (fss_attr/ops/checks.py builds the same text): a bad input gives the same
// message whether it reaches a wrapper, the raw op or a traced graph. Keep the two files in step.
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
  TORCH_CHECK(t.dim() == rank, name, " must be ", layout, " (", rank, " dimensions), got shape ", t.sym_sizes());
}

inline void check_same_dtype(const at::Tensor& support, const at::Tensor& query) {
  TORCH_CHECK(support.scalar_type() == query.scalar_type(), "support must have the dtype of query (",
              query.scalar_type(), "), got ", support.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* name_a, const char* name_b) {
  TORCH_CHECK(a.device() == b.device(), name_a, " and ", name_b, " must be on the same device, got ", a.device(),
              " and ", b.device());
}

inline void check_top_k(int64_t top_k) {
  TORCH_CHECK(top_k >= 0, "top_k must be an int >= 0 (0 turns top-k off), got ", top_k);
}

inline bool is_cosine(const std::string& similarity) {
  TORCH_CHECK(similarity == "dot" || similarity == "cosine", "similarity must be 'dot' or 'cosine', got '",
              similarity, "'");
  return similarity == "cosine";
}

// The kernel-version argument of the back-projection ops: 0 lets the kernel choose; 1..last name one version
// (docs/ops.md, "Kernel versions"). `device` is "CPU" or "CUDA".
inline void check_version(int64_t version, int64_t last, const char* op, const char* device) {
  TORCH_CHECK(version >= 0 && version <= last, "version must be 0 (auto) or 1..", last, " for ", op, " on ", device,
              ", got ", version);
}

// query [B, Q, D] and support [B, M, D] (the features op), or query [B, C, Hq, Wq] and support [B, N, C, Hs, Ws]
// (correlation): the batch size and the feature size must agree. Symbolic sizes are fine (correlation is
// composite, so it runs on fake tensors while tracing).
inline void check_query_support_features(const at::Tensor& query, const at::Tensor& support) {
  TORCH_SYM_CHECK(support.sym_size(0).sym_eq(query.sym_size(0)), "support has batch size ", support.sym_size(0),
                  ", query has ", query.sym_size(0), ": support [B, M, D] must match query [B, Q, D] in B and D");
  TORCH_SYM_CHECK(support.sym_size(2).sym_eq(query.sym_size(2)), "support has feature size D=", support.sym_size(2),
                  ", query has D=", query.sym_size(2), ": support [B, M, D] must match query [B, Q, D] in B and D");
}

inline void check_query_support_grids(const at::Tensor& query, const at::Tensor& support) {
  TORCH_SYM_CHECK(support.sym_size(0).sym_eq(query.sym_size(0)).sym_and(support.sym_size(2).sym_eq(query.sym_size(1))),
                  "support [B, N, C, Hs, Ws] must match query [B, C, Hq, Wq] in B and C: got query ",
                  query.sym_sizes(), ", support ", support.sym_sizes());
}

// Checks shared by both back-projection ops: weights [B, 2, Q] of the accumulation dtype.
inline void check_weights(const at::Tensor& weights, int64_t b, int64_t q, at::ScalarType acc, const at::Tensor& ref) {
  check_rank(weights, 3, "weights", "[B, 2, Q]");
  TORCH_CHECK(weights.size(0) == b && weights.size(1) == 2 && weights.size(2) == q, "weights must have shape [", b,
              ", 2, ", q, "], got ", weights.sizes());
  TORCH_CHECK(weights.scalar_type() == acc, "weights must have dtype ", acc, " (the accumulation dtype), got ",
              weights.scalar_type());
  check_same_device(weights, ref, "weights", "scores/query");
}

// Checks of backproject_scores' inputs; `device` is the kernel's device type.
inline void check_scores_inputs(const at::Tensor& scores, const at::Tensor& weights, int64_t top_k,
                                at::DeviceType device) {
  check_rank(scores, 3, "scores", "[B, Q, M]");
  check_floating(scores, "scores");
  TORCH_CHECK(scores.device().type() == device, "scores must be a ", device, " tensor for this kernel, got ",
              scores.device());
  check_top_k(top_k);
  check_weights(weights, scores.size(0), scores.size(1), acc_type_of(scores.scalar_type()), scores);
}

// Checks of backproject_features' inputs; returns whether the similarity is cosine.
inline bool check_features_inputs(const at::Tensor& query, const at::Tensor& support, const at::Tensor& weights,
                                  const std::string& similarity, int64_t top_k, at::DeviceType device) {
  check_rank(query, 3, "query", "[B, Q, D]");
  check_rank(support, 3, "support", "[B, M, D]");
  check_floating(query, "query");
  check_same_dtype(support, query);
  TORCH_CHECK(query.device().type() == device, "query must be a ", device, " tensor for this kernel, got ",
              query.device());
  check_same_device(query, support, "query", "support");
  check_query_support_features(query, support);
  const bool cosine = is_cosine(similarity);
  check_top_k(top_k);
  check_weights(weights, query.size(0), query.size(1), acc_type_of(query.scalar_type()), query);
  return cosine;
}

// x / max(||x||, 1e-8) along the last dimension (the cosine normalisation of docs/ops.md).
inline at::Tensor normalize_last(const at::Tensor& x) {
  return x / x.norm(2, {-1}, /*keepdim=*/true).clamp_min(1e-8);
}

}  // namespace fss_attr
