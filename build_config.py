"""The build switches of ``fss_attr._C``, resolved: what setup.py compiles, decided in one place.

setup.py imports ``resolve()`` and builds exactly what it returns. scripts/setup_env.sh runs this file
(``python build_config.py``), which prints the stamp of the build this tree would get now: the resolved
configuration, one ``key=value`` a line, then a hash of the build's sources. Two environments that resolve
to the same build (``FSS_ATTR_WITH_CUDA`` unset, ``auto`` or ``1`` on a machine where CUDA can be built)
print the same stamp, so the build is not redone; a real change (``FSS_ATTR_WITH_CUDA=0``, another arch
list, an edited csrc/ file) changes it. ``MAX_JOBS`` changes only how fast it builds, not what.

The switches (environment variables) are described in setup.py's docstring and README's build-switch table.
A bad value ends the program with one line (``SystemExit``).
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# the files whose content makes the build (csrc/ is walked whole)
SOURCES = ("setup.py", "pyproject.toml", "build_config.py", "csrc")


def real_cuda_home(env=os.environ) -> str | None:
    """CUDA_HOME, or the toolkit behind the nvcc on PATH (following wrapper scripts), or /usr/local/cuda*."""
    if env.get("CUDA_HOME"):
        return env["CUDA_HOME"]
    nvcc = shutil.which("nvcc", path=env.get("PATH"))
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


def _default_cpu_flags() -> str:
    """-mavx2 -mfma when this machine has AVX2 and FMA (the extension is built where it runs)."""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return ""
    return "-mavx2 -mfma" if {"avx2", "fma"} <= set(flags) else ""


def _visible_gpu_arches(torch) -> str:
    """The arch list torch.utils.cpp_extension picks when TORCH_CUDA_ARCH_LIST is unset and GPUs are visible:
    every visible GPU's capability (clamped to the newest that this torch was built for), the last +PTX."""
    built = [int(a.split("_")[1]) for a in torch.cuda.get_arch_list() if re.fullmatch(r"sm_\d+", a)]
    newest = max(((sm // 10, sm % 10) for sm in built), default=(99, 9))
    caps = sorted({min(newest, tuple(torch.cuda.get_device_capability(i)))
                   for i in range(torch.cuda.device_count())})
    return ";".join(f"{a}.{b}" for a, b in caps) + "+PTX"


def resolve(torch=None, env=os.environ, root: Path = ROOT) -> dict[str, str]:
    """The build that setup.py makes in this environment, as strings (the stamp's ``key=value`` lines).

    with_cuda   "1" when csrc/cuda/*.cu is compiled (FSS_ATTR_WITH_CUDA: auto/1 when possible, never for 0)
    cuda_home   the toolkit used ("" without CUDA)
    arch_list   TORCH_CUDA_ARCH_LIST; unset: the visible GPUs' arches, or "9.0" when none ("" without CUDA)
    cpu_flags   FSS_ATTR_CPU_FLAGS, or -mavx2 -mfma when this machine has them
    debug       "1" for -O0 -g (FSS_ATTR_DEBUG=1), "0" for -O3
    torch, cuda, python   what the extension is compiled against
    """
    if torch is None:
        import torch
    mode = env.get("FSS_ATTR_WITH_CUDA", "auto").strip().lower() or "auto"
    if mode not in ("auto", "0", "1"):
        sys.exit(f"FSS_ATTR_WITH_CUDA must be auto, 0 or 1, got {env['FSS_ATTR_WITH_CUDA']!r}")
    debug = env.get("FSS_ATTR_DEBUG", "0").strip() or "0"
    if debug not in ("0", "1"):
        sys.exit(f"FSS_ATTR_DEBUG must be 0 or 1, got {env['FSS_ATTR_DEBUG']!r}")
    with_cuda, home, arch = False, None, ""
    if mode != "0":
        have_sources = bool(glob.glob(str(root / "csrc" / "cuda" / "*.cu")))
        home = real_cuda_home(env)
        with_cuda = torch.version.cuda is not None and home is not None and have_sources
        if mode == "1" and not with_cuda:
            sys.exit("FSS_ATTR_WITH_CUDA=1 but CUDA cannot be built: "
                     f"torch CUDA={torch.version.cuda}, toolkit={home}, csrc/cuda sources={have_sources}")
    if with_cuda:
        arch = env.get("TORCH_CUDA_ARCH_LIST", "").strip()
        if not arch or arch == "native":
            arch = _visible_gpu_arches(torch) if torch.cuda.is_available() else "9.0"
    cpu = env["FSS_ATTR_CPU_FLAGS"] if "FSS_ATTR_CPU_FLAGS" in env else _default_cpu_flags()
    return {
        "with_cuda": "1" if with_cuda else "0",
        "cuda_home": home if with_cuda else "",
        "arch_list": arch,
        "cpu_flags": " ".join(cpu.split()),
        "debug": debug,
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "",
        "python": sys.version.split()[0],
    }


def sources_hash(root: Path = ROOT) -> str:
    """sha256 over the build's source files (SOURCES; names and contents, in a fixed order)."""
    files = []
    for name in SOURCES:
        p = root / name
        files += sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p] if p.exists() else []
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def stamp(torch=None, env=os.environ, root: Path = ROOT) -> str:
    """What scripts/setup_env.sh keeps in .venv/.fss_attr-build: the resolved build, then the sources' hash."""
    lines = [f"{k}={v}" for k, v in resolve(torch, env, root).items()]
    return "\n".join(lines + [f"sources={sources_hash(root)}"])


if __name__ == "__main__":
    print(stamp())
