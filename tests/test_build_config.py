"""build_config.py: the build stamp that scripts/setup_env.sh compares (no compile; a stand-in torch and toolkit).

Settings that resolve to the same build give the same stamp (no rebuild); a real change gives another.
"""
import importlib.util
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("build_config", REPO / "build_config.py")
build_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_config)


def fake_torch(cuda="13.0", gpus=(), built=("sm_80", "sm_90")):
    """torch as build_config sees it: its version, its CUDA version, the visible GPUs' capabilities."""
    return SimpleNamespace(
        __version__="2.14.1", version=SimpleNamespace(cuda=cuda),
        cuda=SimpleNamespace(is_available=lambda: bool(gpus), device_count=lambda: len(gpus),
                             get_device_capability=lambda i: gpus[i], get_arch_list=lambda: list(built)))


def fake_toolkit(path: Path) -> str:
    (path / "bin").mkdir(parents=True)
    (path / "include").mkdir()
    (path / "bin" / "nvcc").write_text("")
    (path / "include" / "cuda_runtime_api.h").write_text("")
    return str(path)


@pytest.fixture
def tree(tmp_path):
    """A copy of this repository's build sources, and a CUDA toolkit next to it."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in build_config.SOURCES:
        src = REPO / name
        shutil.copytree(src, root / name) if src.is_dir() else shutil.copy(src, root / name)
    (root / "README.md").write_text("not a build source\n")
    return root, fake_toolkit(tmp_path / "cuda")


def test_same_build_same_stamp(tree):
    root, home = tree
    torch = fake_torch()
    base = build_config.stamp(torch, {"CUDA_HOME": home}, root)
    assert "with_cuda=1" in base.splitlines() and "arch_list=9.0" in base.splitlines()
    same = [{"FSS_ATTR_WITH_CUDA": "auto"}, {"FSS_ATTR_WITH_CUDA": "1"}, {"FSS_ATTR_WITH_CUDA": "AUTO"},
            {"FSS_ATTR_WITH_CUDA": ""}, {"FSS_ATTR_DEBUG": "0"}, {"MAX_JOBS": "16"},
            {"TORCH_CUDA_ARCH_LIST": "9.0"},  # what an unset list resolves to without a GPU
            {"FSS_ATTR_CPU_FLAGS": build_config._default_cpu_flags()}]
    for extra in same:
        assert build_config.stamp(torch, {"CUDA_HOME": home, **extra}, root) == base, extra


def test_real_change_new_stamp(tree, tmp_path):
    root, home = tree
    torch = fake_torch()
    base = build_config.stamp(torch, {"CUDA_HOME": home}, root)
    other_home = fake_toolkit(tmp_path / "cuda-other")
    changes = [{"FSS_ATTR_WITH_CUDA": "0"}, {"TORCH_CUDA_ARCH_LIST": "8.0;9.0"}, {"FSS_ATTR_DEBUG": "1"},
               {"FSS_ATTR_CPU_FLAGS": "-march=native"}, {"CUDA_HOME": other_home}]
    stamps = {build_config.stamp(torch, {"CUDA_HOME": home, **extra}, root) for extra in changes}
    assert len(stamps) == len(changes) and base not in stamps
    assert build_config.stamp(fake_torch(cuda=None), {"CUDA_HOME": home}, root) != base  # a CPU torch
    # without CUDA the toolkit and the arch list do not matter
    cpu = build_config.stamp(torch, {"FSS_ATTR_WITH_CUDA": "0", "CUDA_HOME": home}, root)
    assert build_config.stamp(torch, {"FSS_ATTR_WITH_CUDA": "0", "CUDA_HOME": other_home,
                                      "TORCH_CUDA_ARCH_LIST": "8.0"}, root) == cpu


def test_sources_edit_new_stamp(tree):
    root, home = tree
    env = {"CUDA_HOME": home}
    base = build_config.stamp(fake_torch(), env, root)
    (root / "README.md").write_text("edited\n")
    assert build_config.stamp(fake_torch(), env, root) == base
    kernel = root / "csrc" / "cpu" / "backproject_scores.cpp"
    kernel.write_text(kernel.read_text() + "\n// edited\n")
    edited = build_config.stamp(fake_torch(), env, root)
    assert edited != base
    (root / "csrc" / "cuda" / "new.cuh").write_text("// new\n")
    assert build_config.stamp(fake_torch(), env, root) not in (base, edited)


def test_visible_gpus_arch_list(tree):
    root, home = tree
    cfg = build_config.resolve(fake_torch(gpus=[(9, 0), (8, 0), (9, 0)]), {"CUDA_HOME": home}, root)
    assert cfg["arch_list"] == "8.0;9.0+PTX"
    # a GPU newer than this torch was built for is clamped, as torch.utils.cpp_extension does
    cfg = build_config.resolve(fake_torch(gpus=[(12, 0)]), {"CUDA_HOME": home}, root)
    assert cfg["arch_list"] == "9.0+PTX"


@pytest.mark.parametrize("env, words", [
    ({"FSS_ATTR_WITH_CUDA": "yes"}, "FSS_ATTR_WITH_CUDA must be auto, 0 or 1, got 'yes'"),
    ({"FSS_ATTR_DEBUG": "true"}, "FSS_ATTR_DEBUG must be 0 or 1, got 'true'"),
])
def test_bad_switch_one_line(tree, env, words):
    root, home = tree
    with pytest.raises(SystemExit) as e:
        build_config.resolve(fake_torch(), {"CUDA_HOME": home, **env}, root)
    assert str(e.value.code) == words


def test_forced_cuda_impossible_one_line(tree):
    root, home = tree
    assert build_config.resolve(fake_torch(cuda=None), {"CUDA_HOME": home}, root)["with_cuda"] == "0"
    with pytest.raises(SystemExit) as e:
        build_config.resolve(fake_torch(cuda=None), {"CUDA_HOME": home, "FSS_ATTR_WITH_CUDA": "1"}, root)
    assert "\n" not in str(e.value.code) and str(e.value.code).startswith("FSS_ATTR_WITH_CUDA=1 but CUDA cannot")


def test_this_machine_auto_is_forced_when_possible():
    """The case that rebuilt for minutes: .ci/run sets FSS_ATTR_WITH_CUDA=1, a plain run leaves it unset."""
    import torch

    env = {k: v for k, v in build_config.os.environ.items() if k != "FSS_ATTR_WITH_CUDA"}
    auto = build_config.stamp(torch, env)
    if "with_cuda=1" not in auto.splitlines():
        pytest.skip("CUDA cannot be built here: auto resolves to a CPU build")
    assert build_config.stamp(torch, {**env, "FSS_ATTR_WITH_CUDA": "1"}) == auto
