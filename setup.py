"""Builds the fss_attr extension ``fss_attr._C`` (the Python package itself is described in pyproject.toml).

Build after torch is installed, without build isolation (an isolated build pulls a different torch)::

    pip install --no-build-isolation -e .

Switches (environment variables):

    FSS_ATTR_WITH_CUDA   auto (default): compile csrc/cuda/*.cu when torch is a CUDA build and a CUDA
                         toolkit is found; 1: force (fails if impossible); 0: CPU only.
    CUDA_HOME            the CUDA toolkit. When unset and the ``nvcc`` on PATH is a wrapper script, the
                         real toolkit behind it is used.
    TORCH_CUDA_ARCH_LIST GPU architectures, e.g. "9.0"; defaults to "9.0" when no GPU is visible.
    FSS_ATTR_CPU_FLAGS   extra C++ flags for the CPU kernels; default "-mavx2 -mfma" when the build
                         machine has AVX2 and FMA (the extension is built where it runs), else none.
    FSS_ATTR_DEBUG=1     -O0 -g instead of -O3.
    MAX_JOBS             parallel compile jobs (ninja).
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def _real_cuda_home() -> str | None:
    """CUDA_HOME, or the toolkit behind the nvcc on PATH (following wrapper scripts)."""
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    nvcc = shutil.which("nvcc")
    candidates = []
    if nvcc:
        path = Path(nvcc).resolve()
        try:
            text = path.read_text(errors="ignore") if path.stat().st_size < 65536 else ""
        except OSError:
            text = ""
        candidates += [Path(m) for m in re.findall(r"(/\S+?)/bin/nvcc", text)]
        candidates.append(path.parent.parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/local/cuda*"), reverse=True)]
    for c in candidates:
        if (c / "bin" / "nvcc").exists() and (c / "include" / "cuda_runtime_api.h").exists():
            return str(c)
    return None


def _cpu_flags() -> list[str]:
    if "FSS_ATTR_CPU_FLAGS" in os.environ:
        return os.environ["FSS_ATTR_CPU_FLAGS"].split()
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return ["-mavx2", "-mfma"] if {"avx2", "fma"} <= set(flags) else []


def _want_cuda(torch) -> bool:
    mode = os.environ.get("FSS_ATTR_WITH_CUDA", "auto").lower()
    if mode not in ("auto", "0", "1"):
        sys.exit(f"FSS_ATTR_WITH_CUDA must be auto, 0 or 1, got {mode!r}")
    if mode == "0":
        return False
    have_sources = bool(glob.glob(str(ROOT / "csrc" / "cuda" / "*.cu")))
    home = _real_cuda_home()
    possible = torch.version.cuda is not None and home is not None and have_sources
    if mode == "1" and not possible:
        sys.exit("FSS_ATTR_WITH_CUDA=1 but CUDA cannot be built: "
                 f"torch CUDA={torch.version.cuda}, toolkit={home}, csrc/cuda sources={have_sources}")
    if possible:
        os.environ["CUDA_HOME"] = home
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
    return possible


def _extensions():
    import torch

    with_cuda = _want_cuda(torch)  # sets CUDA_HOME, which cpp_extension reads when it is imported
    from torch.utils import cpp_extension
    debug = os.environ.get("FSS_ATTR_DEBUG") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3"]
    sources = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
    macros = [("FSS_ATTR_TORCH_VERSION", f'"{torch.__version__}"')]
    extra = {"cxx": opt + ["-fopenmp"] + _cpu_flags()}  # the C++ standard is cpp_extension's choice for this torch
    include_dirs = [str(ROOT / "csrc")]
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        macros += [("FSS_ATTR_WITH_CUDA", None), ("FSS_ATTR_CUDA_VERSION", f'"{torch.version.cuda}"'),
                   ("FSS_ATTR_ARCH_LIST", f'"{os.environ.get("TORCH_CUDA_ARCH_LIST", "")}"')]
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
