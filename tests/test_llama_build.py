"""llama.cpp built for the machine it runs on: the cache key says what a build is for, a build made
for another CPU is not reused, and the build `make test` made has no instruction that traps where
AMX is advertised but unusable."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iml_core import llama_build
from iml_core.errors import UserError
from iml_core.llama_build import BuildSpec

ROOT = Path(__file__).resolve().parent.parent


def test_the_key_changes_with_the_cpu_the_compute_and_the_version():
    base = BuildSpec(cpu=("avx", "avx2", "fma"), machine="x86_64")
    keys = {base.key, BuildSpec(cpu=("avx", "avx2", "avx512f", "fma"), machine="x86_64").key,
            BuildSpec(cpu=base.cpu, machine="x86_64", compute="cuda-90").key,
            BuildSpec(cpu=base.cpu, machine="x86_64", compute="cuda-80").key,
            BuildSpec(cpu=base.cpu, machine="x86_64", version="0.0.1").key,
            BuildSpec(cpu=base.cpu, machine="aarch64").key}
    assert len(keys) == 6
    assert base.key == BuildSpec(cpu=("avx", "avx2", "fma"), machine="x86_64").key  # and only with them


def test_amx_is_compiled_out_on_x86_and_cuda_libraries_keep_their_symbols_private():
    cpu = BuildSpec(cpu=("amx_tile", "avx2"), machine="x86_64").cmake_args()
    assert f"-DCMAKE_C_FLAGS={llama_build.AMX_OFF}" in cpu and f"-DCMAKE_CXX_FLAGS={llama_build.AMX_OFF}" in cpu
    assert not any("CUDA" in a for a in cpu)
    cuda = BuildSpec(cpu=("avx2",), machine="x86_64", compute="cuda-90").cmake_args()
    assert "-DGGML_CUDA=ON" in cuda and "-DCMAKE_CUDA_ARCHITECTURES=90" in cuda
    assert "-DCMAKE_SHARED_LINKER_FLAGS=-Wl,--exclude-libs,ALL" in cuda
    arm = BuildSpec(cpu=("asimd",), machine="aarch64").cmake_args()
    assert "-DCMAKE_C_FLAGS=" in arm  # no x86 flag where gcc would reject it


def test_only_instruction_set_flags_make_the_cpu_key(tmp_path, monkeypatch):
    flags = llama_build.cpu_flags()
    assert flags == sorted(flags) and all(re.match(r"^[a-z0-9_]+$", f) for f in flags)
    assert not {"hypervisor", "constant_tsc", "nonstop_tsc"} & set(flags)  # say nothing about instructions


def test_a_build_made_for_another_cpu_is_listed_but_not_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(llama_build, "CACHE", tmp_path)
    monkeypatch.setattr(llama_build, "_build_missing", None)
    other = BuildSpec(cpu=("sse2",), machine="x86_64")
    other.folder.mkdir(parents=True)
    (other.folder / "build.json").write_text(json.dumps({"spec": {"compute": "cpu"}, "seconds": 1.0}))
    assert llama_build.current_build() is None
    assert [b.key for b in llama_build.installed_builds()] == [other.key]
    with pytest.raises(UserError, match="1 build\\(s\\) in .* were made for another CPU or version"):
        llama_build.require_build()


def test_doctor_says_where_llama_cpp_is_not_built_and_which_key_it_needs(tmp_path):
    env = {"IML_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "iml_core", "doctor"], capture_output=True, text=True, env=env,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert f"llama.cpp: not built for this machine (key {llama_build.spec_for('cpu').key})" in out.stdout
    assert "`iml build` makes it" in out.stdout


def test_the_build_here_runs_here_and_has_no_amx_instruction():
    build = llama_build.require_build()
    assert build.spec["cpu"] == llama_build.cpu_flags() and build.key == llama_build.spec_for("cpu").key
    assert build.server.exists() and (build.lib / "libllama.so").exists()
    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils) is needed to read the build's instructions"
    code = subprocess.run([objdump, "-d", str(build.lib / "libggml-cpu.so")], capture_output=True, text=True).stdout
    assert "vfmadd" in code or "fmla" in code  # the disassembly is there to be read...
    assert not re.search(r"\b(tilezero|ldtilecfg|tileloadd|tdpbssd|tdpbf16ps)\b", code)  # ...and has no AMX
    info = llama_build.import_llama_cpp().llama_print_system_info().decode()
    assert "AMX" not in info
    doctor = subprocess.run([sys.executable, "-m", "iml_core", "doctor"], capture_output=True, text=True, cwd=ROOT)
    assert f"llama.cpp {build.key}: built in" in doctor.stdout and "GPU offload: not built in" in doctor.stdout


def test_the_engine_imports_llama_cpp_in_one_place():
    """Every import goes through import_llama_cpp, which points the bindings at this machine's build."""
    offenders = []
    for path in [*ROOT.glob("iml_core/**/*.py"), *ROOT.glob("studio/*.py"), *ROOT.glob("pages/*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*(import llama_cpp|from llama_cpp\b)", line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == ["iml_core/llama_build.py:" + str(next(
        n for n, line in enumerate((ROOT / "iml_core/llama_build.py").read_text().splitlines(), 1)
        if line.strip() == "import llama_cpp"))]


def test_build_progress_is_read_from_the_log(tmp_path, monkeypatch):
    monkeypatch.setattr(llama_build, "CACHE", tmp_path)
    llama_build.progress_file().parent.mkdir(parents=True)
    llama_build.progress_file().write_text("$ cmake\n[3/212] Building C object a.o\n[40/212] Linking b.so\n")
    progress = llama_build.build_progress()
    assert (progress.done, progress.total, progress.running, progress.failed) == (40, 212, False, None)
    llama_build.progress_file().write_text("[7/9] x\nBUILD FAILED: compiling llama.cpp failed (exit 1)\n")
    assert llama_build.build_progress().failed == "compiling llama.cpp failed (exit 1)"


def test_build_starts_without_plotly_or_pandas(tmp_path):
    # The build `make test` made answers at once; `iml build` must get there on the engine's packages.
    from test_lean_imports import iml_blocked

    result = iml_blocked(tmp_path, "build", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["key"] == llama_build.require_build().key
