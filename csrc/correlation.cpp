// correlation (docs/ops.md): registered once, as a CompositeImplicitAutograd kernel built from ATen operations
// (a batched matrix product, the cosine normalisation, relu, top-k as a mask). The dispatcher runs the same code
// for every device, autograd differentiates the ATen operations (so there is no hand-written backward op), and
// tracing (FakeTensor, torch.compile, dynamic shapes) sees the ATen operations, hence the symbolic sizes below.
//
// Why no fused kernel: the op is one GEMM plus elementwise work and a top-k; cuBLAS / MKL do the GEMM, and a fused
// kernel would have to reproduce their speed and a backward pass. Measured (docs/ops.md): composition + autograd
// costs the same as the former forward kernel + hand-written backward op.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>

#include "common.h"

namespace fss_attr {
namespace {

at::Tensor correlation(const at::Tensor& query, const at::Tensor& support, std::string similarity, bool relu,
                       int64_t top_k) {
  check_rank(query, 4, "query", "[B, C, Hq, Wq]");
  check_rank(support, 5, "support", "[B, N, C, Hs, Ws]");
  check_floating(query, "query");
  check_same_dtype(support, query);
  check_same_device(query, support, "query", "support");
  check_query_support_grids(query, support);
  const bool cosine = is_cosine(similarity);
  check_top_k(top_k);

  // Explicit sizes (no -1), so that empty inputs (B = 0, C = 0, an empty grid) reshape too.
  const c10::SymInt b = query.sym_size(0), c = query.sym_size(1);
  const c10::SymInt m = support.sym_size(1) * support.sym_size(3) * support.sym_size(4);
  at::Tensor q = query.flatten(2).transpose(1, 2);                                  // [B, Q, C]
  at::Tensor k = support.permute({0, 1, 3, 4, 2}).reshape_symint({b, m, c});         // [B, M, C]
  if (cosine) {
    q = normalize_last(q);
    k = normalize_last(k);
  }
  at::Tensor s = at::bmm(q, k.transpose(1, 2));  // [B, Q, M]
  if (relu) s = s.clamp_min(0);
  if (top_k > 0 && s.sym_size(2) > top_k) {
    // The selection is a constant mask for autograd: the k-th largest of each row, ties at it kept.
    const at::Tensor kth = std::get<0>(s.detach().topk(top_k, -1, /*largest=*/true, /*sorted=*/true))
                               .narrow(-1, top_k - 1, 1);
    s = s * (s.detach() >= kth);
  }
  return s.reshape_symint({b, query.sym_size(2), query.sym_size(3), support.sym_size(1), support.sym_size(3),
                           support.sym_size(4)});
}

}  // namespace

TORCH_LIBRARY_IMPL(fss_attr, CompositeImplicitAutograd, m) {
  m.impl("correlation", &correlation);
}

}  // namespace fss_attr
