// correlation and correlation_backward (docs/ops.md): GEMM-shaped, written with ATen operations (batched
// matrix products, top-k, masks), so the same device-generic code is registered for CPU and for CUDA.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "common.h"

namespace fss_attr {
namespace {

struct Flat {
  at::Tensor q, k;  // [B, Q, C], [B, M, C]
};

void check_inputs(const at::Tensor& query, const at::Tensor& support) {
  check_rank(query, 4, "query", "[B, C, Hq, Wq]");
  check_rank(support, 5, "support", "[B, N, C, Hs, Ws]");
  check_floating(query, "query");
  TORCH_CHECK(support.scalar_type() == query.scalar_type(), "support must have the dtype of query (",
              query.scalar_type(), "), got ", support.scalar_type());
  check_same_device(query, support, "query", "support");
  TORCH_CHECK(support.size(0) == query.size(0) && support.size(2) == query.size(1),
              "support [B, N, C, Hs, Ws] must match query [B, C, Hq, Wq] in B and C: got query ", query.sizes(),
              ", support ", support.sizes());
}

Flat flatten(const at::Tensor& query, const at::Tensor& support) {
  const int64_t b = query.size(0), c = query.size(1);
  return {query.flatten(2).transpose(1, 2), support.permute({0, 1, 3, 4, 2}).reshape({b, -1, c})};
}

// Scores after similarity and relu, and the top-k keep mask (undefined when top-k is off).
std::tuple<at::Tensor, at::Tensor> scores_and_mask(const at::Tensor& q, const at::Tensor& k, bool relu, int64_t top_k) {
  at::Tensor s = at::bmm(q, k.transpose(1, 2));
  if (relu) s = s.clamp_min(0);
  at::Tensor keep;
  const int64_t m = s.size(2);
  if (top_k > 0 && top_k < m) {
    at::Tensor kth = std::get<0>(s.topk(top_k, -1, /*largest=*/true, /*sorted=*/true)).narrow(-1, top_k - 1, 1);
    keep = s >= kth;
  }
  return {s, keep};
}

at::Tensor correlation_impl(const at::Tensor& query, const at::Tensor& support, std::string similarity, bool relu,
                           int64_t top_k) {
  check_inputs(query, support);
  check_top_k(top_k);
  const bool cosine = is_cosine(similarity);
  Flat f = flatten(query, support);
  if (cosine) {
    f.q = normalize_last(f.q);
    f.k = normalize_last(f.k);
  }
  auto [s, keep] = scores_and_mask(f.q, f.k, relu, top_k);
  if (keep.defined()) s = s * keep;
  return s.reshape({query.size(0), query.size(2), query.size(3), support.size(1), support.size(3), support.size(4)});
}

// Gradient of x̂ = x / max(||x||, eps) given dL/dx̂ (rows along the last dimension).
at::Tensor normalize_backward(const at::Tensor& x, const at::Tensor& grad_hat) {
  const at::Tensor norm = x.norm(2, {-1}, true);
  const at::Tensor big = norm > 1e-8;
  const at::Tensor denom = norm.clamp_min(1e-8);
  const at::Tensor hat = x / denom;
  const at::Tensor radial = hat * (hat * grad_hat).sum(-1, true);
  return at::where(big, (grad_hat - radial) / denom, grad_hat / denom);
}

std::tuple<at::Tensor, at::Tensor> correlation_backward_impl(const at::Tensor& grad, const at::Tensor& query,
                                                            const at::Tensor& support, std::string similarity,
                                                            bool relu, int64_t top_k) {
  check_inputs(query, support);
  check_top_k(top_k);
  const bool cosine = is_cosine(similarity);
  const int64_t b = query.size(0), c = query.size(1);
  const int64_t qn = query.size(2) * query.size(3);
  const int64_t mn = support.size(1) * support.size(3) * support.size(4);
  TORCH_CHECK(grad.numel() == b * qn * mn && grad.dim() == 6, "grad must have the correlation's shape [B, Hq, Wq, N, Hs, Ws]");
  Flat f = flatten(query, support);
  at::Tensor qh = cosine ? normalize_last(f.q) : f.q;
  at::Tensor kh = cosine ? normalize_last(f.k) : f.k;
  at::Tensor g = grad.reshape({b, qn, mn}).to(query.scalar_type());
  auto [s, keep] = scores_and_mask(qh, kh, relu, top_k);  // after relu, s > 0 exactly where relu' = 1
  if (relu) g = g * (s > 0);
  if (keep.defined()) g = g * keep;
  at::Tensor dq = at::bmm(g, kh);                  // [B, Q, C]
  at::Tensor dk = at::bmm(g.transpose(1, 2), qh);  // [B, M, C]
  if (cosine) {
    dq = normalize_backward(f.q, dq);
    dk = normalize_backward(f.k, dk);
  }
  at::Tensor grad_query = dq.transpose(1, 2).reshape(query.sizes()).contiguous();
  at::Tensor grad_support = dk.reshape({b, support.size(1), support.size(3), support.size(4), c})
                                .permute({0, 1, 4, 2, 3})
                                .contiguous();
  return {grad_query, grad_support};
}

}  // namespace

TORCH_LIBRARY_IMPL(fss_attr, CPU, m) {
  m.impl("correlation", &correlation_impl);
  m.impl("correlation_backward", &correlation_backward_impl);
}

TORCH_LIBRARY_IMPL(fss_attr, CUDA, m) {
  m.impl("correlation", &correlation_impl);
  m.impl("correlation_backward", &correlation_backward_impl);
}

}  // namespace fss_attr
