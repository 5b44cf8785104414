// backproject_features on CUDA (docs/ops.md). Kernel versions (the op's `version` argument):
//   1  blocked: blocks of query rows, each block's scores [rows, M] from one cuBLAS product (float32 stays
//      float32 unless the user switched TF32 matrix products on: then it warns), then the row kernels of
//      row_kernels.cuh with float atomics; any dtype, top-k. Memory: the block (2^26 scores: 256 MB in float32,
//      512 MB in float64).
//   2  flash (flash_features.cuh): the scores are never stored; float32 features on FMA, float16/bfloat16 on
//      tensor cores; float atomics; no top-k, no float64.
//   3  as 1 with the deterministic column sums of row_kernels.cuh (no atomics). Under
//      torch.use_deterministic_algorithms(True), cuBLAS needs CUBLAS_WORKSPACE_CONFIG=:4096:8 as for any matmul.
// Version 0 (auto): 3 under torch.use_deterministic_algorithms(True), else 2 where it applies, else 1. Versions 1
// and 2 call at::globalContext().alertNotDeterministic.
#include <torch/library.h>

#include <string>

#include "../common.h"
#include "flash_features.cuh"
#include "row_kernels.cuh"

namespace fss_attr {
namespace {

constexpr int64_t kBlockElements = int64_t(1) << 26;

// 1 / max(||x||, 1e-8) along the last dimension, float32 [B, N] (the cosine normalisation of docs/ops.md).
at::Tensor inverse_norms(const at::Tensor& x) {
  return x.to(at::kFloat).norm(2, {-1}).clamp_min(1e-8).reciprocal().contiguous();
}

void features_flash(const at::Tensor& query, const at::Tensor& support, const at::Tensor& weights, bool cosine,
                    double scale, bool relu, bool softmax, at::Tensor& out) {
  const int64_t b = query.size(0), q = query.size(1), m = support.size(1), d = query.size(2);
  at::Tensor inv_q, inv_k;
  if (cosine) {
    inv_q = inverse_norms(query);
    inv_k = inverse_norms(support);
  }
  at::Tensor workspace = at::empty({cuda::flash::workspace_floats(q, m)}, out.options());
  auto run = [&](auto tag) {
    using in_t = decltype(tag);
    const auto* qp = reinterpret_cast<const in_t*>(query.data_ptr());
    const auto* kp = reinterpret_cast<const in_t*>(support.data_ptr());
    for (int64_t bi = 0; bi < b; ++bi) {
      const cuda::flash::Problem p{q, m, d, static_cast<float>(scale), relu,
                                   cosine ? inv_q.data_ptr<float>() + bi * q : nullptr,
                                   cosine ? inv_k.data_ptr<float>() + bi * m : nullptr};
      const float* w = weights.data_ptr<float>() + bi * 2 * q;
      float* o = out.data_ptr<float>() + bi * 2 * m;
      cuda::flash::accumulate<in_t>(qp + bi * q * d, kp + bi * m * d, p, softmax, w, w + q, o, o + m,
                                    workspace.data_ptr<float>());
    }
  };
  switch (query.scalar_type()) {
    case at::kFloat: run(float{}); break;
    case at::kHalf: run(__half{}); break;
    case at::kBFloat16: run(__nv_bfloat16{}); break;
    default: TORCH_CHECK(false, "fss_attr: no flash kernel for ", query.scalar_type());
  }
}

void features_blocked(const at::Tensor& query, const at::Tensor& support, const at::Tensor& weights, bool cosine,
                      double scale, bool relu, bool softmax, int64_t top_k, bool deterministic, at::Tensor& out) {
  const int64_t b = query.size(0), q = query.size(1), m = support.size(1);
  const auto acc = out.scalar_type();
  if (acc == at::kFloat && at::globalContext().allowTF32CuBLAS()) {
    TORCH_WARN_ONCE("fss_attr: TF32 matrix products are enabled (torch.backends.cuda.matmul.allow_tf32); the top-k "
                    "path of backproject_features uses them, so its float32 scores carry ~1e-3 relative error");
  }
  at::Tensor qf = query.to(acc), kf = support.to(acc);
  if (cosine) {
    qf = normalize_last(qf);
    kf = normalize_last(kf);
  }
  const int64_t rows_per_block = std::max<int64_t>(1, std::min<int64_t>({q, kBlockElements / m, int64_t(1) << 20}));
  at::Tensor block = at::empty({rows_per_block, m}, qf.options());
  at::Tensor stats = at::empty({3 * rows_per_block}, qf.options());
  at::Tensor partials = at::empty({deterministic ? cuda::kDeterministicChunks * 2 * m : 0}, qf.options());
  AT_DISPATCH_FLOATING_TYPES(qf.scalar_type(), "backproject_features_cuda", [&] {
    using acc_t = scalar_t;
    for (int64_t bi = 0; bi < b; ++bi) {
      const acc_t* w = weights.data_ptr<acc_t>() + bi * 2 * q;
      acc_t* o = out.data_ptr<acc_t>() + bi * 2 * m;
      const at::Tensor kt = kf[bi].t();
      for (int64_t q0 = 0; q0 < q; q0 += rows_per_block) {
        const int64_t rows = std::min(rows_per_block, q - q0);
        at::Tensor scores = block.narrow(0, 0, rows);
        at::mm_out(scores, qf[bi].narrow(0, q0, rows), kt);
        cuda::accumulate_rows<acc_t, acc_t>(scores.data_ptr<acc_t>(), rows, m, static_cast<acc_t>(scale), relu,
                                            softmax, top_k, w + q0, w + q + q0, o, o + m, stats.data_ptr<acc_t>(),
                                            deterministic ? partials.data_ptr<acc_t>() : nullptr);
      }
    }
  });
}

at::Tensor backproject_features_cuda(const at::Tensor& query_in, const at::Tensor& support_in,
                                     const at::Tensor& weights_in, std::string similarity, double scale, bool relu,
                                     bool softmax, int64_t top_k, int64_t version) {
  const bool cosine =
      check_features_inputs(query_in, support_in, weights_in, similarity, top_k, at::DeviceType::CUDA);
  check_version(version, 3, "backproject_features", "CUDA");
  const at::Tensor query = query_in.contiguous(), support = support_in.contiguous(), weights = weights_in.contiguous();
  const int64_t b = query.size(0), q = query.size(1), m = support.size(1);
  const auto acc = acc_type_of(query.scalar_type());
  const c10::cuda::CUDAGuard guard(query.device());
  const bool flash = cuda::flash::flash_supports(query.scalar_type(), top_k, m);
  TORCH_CHECK(version != 2 || flash, "backproject_features: CUDA version 2 needs float32 features (or float16/"
              "bfloat16 on compute capability >= 8.0) and top-k off, got ", query.scalar_type(), " and top_k = ",
              top_k);
  if (version == 0) version = at::globalContext().deterministicAlgorithms() ? 3 : flash ? 2 : 1;
  at::Tensor out = at::zeros({b, 2, m}, query.options().dtype(acc));
  if (b == 0 || q == 0 || m == 0) return out;
  if (version == 2) {
    at::globalContext().alertNotDeterministic("fss_attr::backproject_features (CUDA version 2: float atomics)");
    features_flash(query, support, weights, cosine, scale, relu, softmax, out);
  } else {
    if (version == 1)
      at::globalContext().alertNotDeterministic("fss_attr::backproject_features (CUDA version 1: float atomics)");
    features_blocked(query, support, weights, cosine, scale, relu, softmax, top_k, version == 3, out);
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fss_attr, CUDA, m) {
  m.impl("backproject_features", &backproject_features_cuda);
}

}  // namespace fss_attr
