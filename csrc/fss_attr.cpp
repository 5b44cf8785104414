// The fss_attr extension: the op schemas (TORCH_LIBRARY, once, here) and the pybind11 module fss_attr._C.
// Kernels register per backend in csrc/cpu/*.cpp and csrc/cuda/*.cu (correlation: once, composite). Semantics: docs/ops.md.
#include <torch/library.h>

TORCH_LIBRARY(fss_attr, m) {
  // `version`: 0 lets the kernel choose; 1, 2, ... run one kernel version (docs/ops.md, "Kernel versions").
  m.def("backproject_scores(Tensor scores, Tensor weights, bool softmax, int top_k, int version=0) -> Tensor");
  m.def(
      "backproject_features(Tensor query, Tensor support, Tensor weights, str similarity, float scale, bool relu, "
      "bool softmax, int top_k, int version=0) -> Tensor");
  // One CompositeImplicitAutograd kernel (csrc/correlation.cpp): every device, autograd from ATen.
  m.def("correlation(Tensor query, Tensor support, str similarity, bool relu, int top_k) -> Tensor");
}

#ifndef FSS_ATTR_NO_PYTHON
#include <Python.h>
#include <pybind11/pybind11.h>

#include "cpu/cpu_paths.h"

#ifndef FSS_ATTR_CUDA_VERSION
#define FSS_ATTR_CUDA_VERSION ""
#endif
#ifndef FSS_ATTR_ARCH_LIST
#define FSS_ATTR_ARCH_LIST ""
#endif
#ifndef FSS_ATTR_TORCH_VERSION
#define FSS_ATTR_TORCH_VERSION ""
#endif

namespace py = pybind11;

static py::dict build_info() {
  py::dict d;
  d["torch_version"] = FSS_ATTR_TORCH_VERSION;
#ifdef FSS_ATTR_WITH_CUDA
  d["with_cuda"] = true;
  d["cuda_version"] = FSS_ATTR_CUDA_VERSION;
  d["cuda_arch_list"] = FSS_ATTR_ARCH_LIST;
#else
  d["with_cuda"] = false;
  d["cuda_version"] = py::none();
  d["cuda_arch_list"] = py::none();
#endif
#ifdef __VERSION__
  d["compiler"] = __VERSION__;
#endif
#ifdef _OPENMP
  d["openmp"] = true;
#else
  d["openmp"] = false;
#endif
  d["cpu_vectorization"] = FSS_ATTR_CPU_PATHS;
  return d;
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "fss_attr compiled ops (registered as torch.ops.fss_attr.*)";
  m.def("build_info", &build_info, "How this binary was built: torch and CUDA versions, arch list, compiler.");
}
#endif
