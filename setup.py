"""Builds the fss_attr extension ``fss_attr._C`` (the Python package itself is described in pyproject.toml).

Build after torch is installed, without build isolation (an isolated build pulls a different torch)::

    pip install --no-build-isolation -e .

Switches (environment variables), resolved by build_config.py (``resolve``: one implementation, which
scripts/setup_env.sh also runs to decide whether a rebuild is needed):

    FSS_ATTR_WITH_CUDA   auto (default): compile csrc/cuda/*.cu when torch is a CUDA build and a CUDA
                         toolkit is found; 1: force (fails if impossible); 0: CPU only.
    CUDA_HOME            the CUDA toolkit. When unset and the ``nvcc`` on PATH is a wrapper script, the
                         real toolkit behind it is used.
    TORCH_CUDA_ARCH_LIST GPU architectures, e.g. "9.0"; unset: those of the visible GPUs, or "9.0"
                         when no GPU is visible.
    FSS_ATTR_CPU_FLAGS   extra C++ flags for the CPU kernels; default "-mavx2 -mfma" when the build
                         machine has AVX2 and FMA (the extension is built where it runs), else none.
    FSS_ATTR_DEBUG       1: -O0 -g instead of -O3; 0 (default): -O3.
    MAX_JOBS             parallel compile jobs (ninja).
"""
from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import build_config  # noqa: E402  (the switches, resolved; scripts/setup_env.sh stamps the same resolution)


def _extensions():
    import torch

    cfg = build_config.resolve(torch)
    with_cuda = cfg["with_cuda"] == "1"
    if with_cuda:  # cpp_extension reads CUDA_HOME when it is imported, TORCH_CUDA_ARCH_LIST when it compiles
        os.environ["CUDA_HOME"] = cfg["cuda_home"]
        os.environ["TORCH_CUDA_ARCH_LIST"] = cfg["arch_list"]
    from torch.utils import cpp_extension
    opt = ["-O0", "-g"] if cfg["debug"] == "1" else ["-O3"]
    sources = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
    macros = [("FSS_ATTR_TORCH_VERSION", f'"{torch.__version__}"')]
    # the C++ standard is cpp_extension's choice for this torch
    extra = {"cxx": opt + ["-fopenmp"] + cfg["cpu_flags"].split()}
    include_dirs = [str(ROOT / "csrc")]
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        macros += [("FSS_ATTR_WITH_CUDA", None), ("FSS_ATTR_CUDA_VERSION", f'"{torch.version.cuda}"'),
                   ("FSS_ATTR_ARCH_LIST", f'"{cfg["arch_list"]}"')]
        extra["nvcc"] = opt + ["--expt-relaxed-constexpr"]
        for site in map(Path, sys.path):
            inc = site / "nvidia" / "cu13" / "include"
            if inc.is_dir():
                include_dirs.append(str(inc))
                break
        ext_type = cpp_extension.CUDAExtension
    else:
        ext_type = cpp_extension.CppExtension
    return [ext_type("fss_attr._C", sources, include_dirs=include_dirs, define_macros=macros,
                     extra_compile_args=extra, extra_link_args=["-fopenmp"])], cpp_extension.BuildExtension


ext_modules, build_ext = _extensions()
setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext.with_options(use_ninja=True)})
