"""llama.cpp built once for this machine: the `llama-server` the engine runs models in, and the
shared libraries that llama-cpp-python (the in-process alternative) loads.

Both come from the llama.cpp source vendored in the pinned llama-cpp-python sdist, so the managed
server and the in-process backend run the same code. A build is kept in
`~/.cache/iml-studio/llama.cpp/<version>-<compute>-<cpu key>/` and is reused only where its key
matches: the llama.cpp version, CPU or CUDA (with the GPU's architecture), and the CPU's
instruction-set flags. A build from another machine is never run blindly.

Why the flags (docs/ARCHITECTURE.md §5):
- `-march=native` (ggml's default) turns AMX on wherever CPUID shows it, and in some VMs the
  first tile instruction traps (SIGILL). AMX is compiled out until it is proven safe.
- The rest of the machine's instruction set is used: that is what the key says, so the build runs
  where it was built and is rebuilt elsewhere.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from iml_core.errors import RunFailed, UserError

LLAMA_CPP_PYTHON_VERSION = "0.3.36"  # the sdist whose vendored llama.cpp is built; one version everywhere
CACHE = Path(os.environ.get("IML_CACHE", Path.home() / ".cache" / "iml-studio"))
# Flags that change which instructions the compiler may emit (the rest of /proc/cpuinfo does not).
_ISA_FLAG = re.compile(r"^(sse\w*|ssse3|avx\w*|fma\w*|f16c|bmi\d|amx\w*|movbe|popcnt|lzcnt|abm|gfni|vaes|"
                       r"vpclmulqdq|sha_ni|adx|aes|pclmulqdq|asimd\w*|sve\w*|fp16|fphp|dotprod|i8mm|bf16)$")
# ggml's AMX kernels trap in some VMs that advertise AMX; compiled out, whatever the CPU says.
AMX_OFF = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
_STEP = re.compile(r"^\[(\d+)/(\d+)\]")


def cpu_flags() -> list[str]:
    """The instruction-set flags of this CPU, sorted; the machine's name where /proc/cpuinfo is absent."""
    return list(_cpu_flags())


@functools.lru_cache(maxsize=1)  # the CPU does not change under a running process
def _cpu_flags() -> tuple[str, ...]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return (platform.machine(),)
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return tuple(sorted({f for f in value.split() if _ISA_FLAG.match(f)}))
    return (platform.machine(),)


@functools.lru_cache(maxsize=1)  # asked on every page tick; nvidia-smi takes tens of milliseconds
def cuda_architecture() -> str | None:
    """The compute capability of the first NVIDIA GPU (e.g. '90'), None without one."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.stdout.strip().splitlines()[:1]
    return first[0].strip().replace(".", "") if out.returncode == 0 and first else None


@dataclass(frozen=True)
class BuildSpec:
    """What a build is for; its key names the folder, so a build is reused only where all of it holds."""
    version: str = LLAMA_CPP_PYTHON_VERSION
    compute: str = "cpu"  # "cpu", or "cuda-<architecture>"
    machine: str = field(default_factory=platform.machine)
    cpu: tuple[str, ...] = field(default_factory=_cpu_flags)

    @property
    def key(self) -> str:
        digest = hashlib.sha256(json.dumps([self.machine, self.cpu, self.cmake_args()]).encode()).hexdigest()[:12]
        return f"{self.version}-{self.compute}-{digest}"

    @property
    def folder(self) -> Path:
        return CACHE / "llama.cpp" / self.key

    def finished(self) -> Build | None:
        """This build, where it was made and finished."""
        return _finished(self.folder)

    def cmake_args(self) -> list[str]:
        x86 = self.machine in ("x86_64", "AMD64", "i686")
        c_flags = AMX_OFF if x86 else ""
        args = ["-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON", "-DGGML_NATIVE=ON",
                f"-DCMAKE_C_FLAGS={c_flags}", f"-DCMAKE_CXX_FLAGS={c_flags}",
                "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_TESTS=OFF",
                "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
                # Found next to each other at run time, wherever the folder is.
                "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON", "-DCMAKE_INSTALL_RPATH=$ORIGIN/../lib"]
        if self.compute.startswith("cuda-"):
            # The GPU import-order crash (numpy first, then a std::regex facet that libllama.so
            # resolved inside libggml-cuda.so): libggml-cuda exports its ggml API and nothing else.
            # Its host code's C++ template copies are hidden, and symbols from static archives
            # (the CUDA runtime's) stay private, so neither can stand in for libstdc++'s own.
            args += ["-DGGML_CUDA=ON", f"-DCMAKE_CUDA_ARCHITECTURES={self.compute.removeprefix('cuda-')}",
                     "-DCMAKE_CUDA_FLAGS=-Xcompiler=-fvisibility=hidden,-fvisibility-inlines-hidden",
                     "-DCMAKE_SHARED_LINKER_FLAGS=-Wl,--exclude-libs,ALL"]
        return args


def spec_for(gpu: str = "auto") -> BuildSpec:
    """The build for this machine: `gpu` 'cpu', 'cuda', or 'auto' (CUDA only where a GPU and nvcc are here)."""
    if gpu not in ("auto", "cpu", "cuda"):
        raise UserError(f"the build's GPU choice must be auto, cpu or cuda, got {gpu!r}")
    architecture = cuda_architecture() if gpu != "cpu" else None
    if gpu == "cuda" and architecture is None:
        raise UserError("a CUDA build needs an NVIDIA GPU that nvidia-smi can see; build for the CPU instead "
                        "(`iml build --gpu cpu`)")
    if architecture and gpu == "auto" and not shutil.which("nvcc"):
        architecture = None  # a GPU without the CUDA compiler: the CPU build still runs
    return BuildSpec(compute=f"cuda-{architecture}" if architecture else "cpu")


@dataclass(frozen=True)
class Build:
    """A finished build: where its server and libraries are, and what it was built for."""
    folder: Path
    spec: dict
    seconds: float

    @property
    def server(self) -> Path:
        return self.folder / "bin" / "llama-server"

    @property
    def lib(self) -> Path:
        return self.folder / "lib"

    @property
    def key(self) -> str:
        return self.folder.name

    @property
    def compute(self) -> str:
        return self.spec["compute"]


def _finished(folder: Path) -> Build | None:
    """The build in a folder, None where there is none (a half-written or foreign folder is none)."""
    try:
        data = json.loads((folder / "build.json").read_text())
        return Build(folder, data["spec"], data["seconds"])
    except (OSError, ValueError, KeyError):
        return None


def installed_builds() -> list[Build]:
    """Every finished build on this machine, for any CPU; the one to use is `current_build()`."""
    root = CACHE / "llama.cpp"
    return [b for b in (_finished(f) for f in sorted(root.iterdir()) if f.is_dir()) if b] if root.exists() else []


def current_build() -> Build | None:
    """The finished build made for this machine, or None: a CUDA build where there is one for this
    GPU, else the CPU build."""
    gpu = spec_for("auto")
    for spec in ([gpu] if gpu.compute != "cpu" else []) + [spec_for("cpu")]:
        if (found := spec.finished()) is not None:
            return found
    return None


# Set by the command line, which builds in the foreground where a build is missing (with progress
# on stderr); the dashboard leaves it unset and starts a build in the background instead.
_build_missing: Callable[[], Build] | None = None


def build_when_missing(builder: Callable[[], Build] | None) -> None:
    global _build_missing
    _build_missing = builder


def require_build(*, build_if_missing: bool = True) -> Build:
    """This machine's build; where there is none, the command line's builder makes it (unless
    `build_if_missing` is off: a check must not start a six-minute build), else a UserError."""
    build = current_build()
    if build is None and build_if_missing and _build_missing is not None:
        build = _build_missing()
    if build is None:
        other = installed_builds()
        elsewhere = (f" ({len(other)} build(s) in {CACHE / 'llama.cpp'} were made for another CPU or version "
                     "and are not reused)") if other else ""
        raise UserError(f"llama.cpp is not built for this machine yet{elsewhere}; run `iml build` (about 6 minutes "
                        "on 2 cores, once), or press Build on the Models page")
    return build


def progress_file() -> Path:
    return CACHE / "llama.cpp" / "build.log"


@dataclass(frozen=True)
class Progress:
    """What a build (here or in another process) is doing, read from its log."""
    running: bool
    done: int
    total: int
    failed: str | None  # the error of the last build, when it failed

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


def build_progress() -> Progress:
    path = progress_file()
    running = _lock_is_held()
    if not path.exists():
        return Progress(running, 0, 0, None)
    lines = path.read_text(errors="replace").splitlines()
    done = total = 0
    for line in lines:
        step = _STEP.match(line)
        if step:
            done, total = int(step[1]), int(step[2])
    failed = next((line.removeprefix("BUILD FAILED: ") for line in reversed(lines) if line.startswith("BUILD FAILED")),
                  None)
    return Progress(running, done, total, None if running else failed)


def _lock_path() -> Path:
    return CACHE / "llama.cpp" / ".lock"


def _lock_is_held() -> bool:
    path = _lock_path()
    if not path.exists():
        return False
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def sdist() -> Path:
    """The pinned llama-cpp-python source archive, downloaded once from the package registry."""
    folder = CACHE / "sdist"
    found = sorted(folder.glob(f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                          "--dest", str(folder), f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"],
                         capture_output=True, text=True)
    found = sorted(folder.glob(f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"))
    if out.returncode != 0 or not found:
        raise RunFailed(f"could not download the llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} source from the package "
                        f"registry: {(out.stderr or out.stdout).strip()[-400:]}")
    return found[0]


def _extract_llama_cpp(archive: Path, into: Path) -> Path:
    """vendor/llama.cpp of the sdist, without its model files and docs (113 MB nobody builds from)."""
    top = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
    skip = (top + "models/", top + "docs/", top + "examples/", top + "tests/")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(top) and not m.name.startswith(skip)]
        tar.extractall(into, members=members, filter="data")
    return into / top


def _run_logged(command: list[str], log, on_progress: Callable[[str], None] | None = None) -> None:
    """Runs a build command with its output in the log, each ninja step also to `on_progress`."""
    log.write("$ " + " ".join(command) + "\n")
    log.flush()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        log.write(line)
        log.flush()
        if on_progress and _STEP.match(line):
            on_progress(line.rstrip())
    if process.wait() != 0:
        raise RunFailed(f"`{' '.join(command[:3])} ...` failed (exit {process.returncode}); the last lines of "
                        f"{progress_file()} say why")


def build(gpu: str = "auto", jobs: int | None = None, on_progress: Callable[[str], None] | None = None) -> Build:
    """Builds llama.cpp for this machine unless a build for it is cached; waits for a build another
    process is making. Progress lines go to `progress_file()` (and to `on_progress`)."""
    spec = spec_for(gpu)
    existing = spec.finished()
    if existing is not None:
        return existing
    root = CACHE / "llama.cpp"
    root.mkdir(parents=True, exist_ok=True)
    with _lock_path().open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second builder waits here, then finds the first one's build
        existing = spec.finished()
        if existing is not None:
            return existing
        started = time.perf_counter()
        with progress_file().open("w") as log:
            try:
                with tempfile.TemporaryDirectory(dir=root, prefix=".building-") as work:
                    _build_into(spec, Path(work), log, jobs, on_progress)
                    (Path(work) / "out" / "build.json").write_text(json.dumps(
                        {"spec": asdict(spec), "seconds": round(time.perf_counter() - started, 1),
                         "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "cmake_args": spec.cmake_args()}, indent=1))
                    shutil.rmtree(spec.folder, ignore_errors=True)
                    (Path(work) / "out").rename(spec.folder)
            except (RunFailed, OSError) as e:
                log.write(f"BUILD FAILED: {e}\n")
                raise RunFailed(f"building llama.cpp failed: {e}") from None
            log.write(f"built {spec.key} in {time.perf_counter() - started:.0f} s\n")
    return spec.finished()


def _build_into(spec: BuildSpec, work: Path, log, jobs: int | None, on_progress) -> None:
    source = _extract_llama_cpp(sdist(), work / "src")
    build_dir = work / "build"
    _run_logged(["cmake", "-S", str(source), "-B", str(build_dir), *spec.cmake_args()], log)
    _run_logged(["cmake", "--build", str(build_dir), "--target", "llama-server", "llama",
                 "--parallel", str(jobs or os.cpu_count() or 2)], log, on_progress)
    out = work / "out"
    (out / "bin").mkdir(parents=True)
    (out / "lib").mkdir()
    shutil.copy2(build_dir / "bin" / "llama-server", out / "bin" / "llama-server")
    for library in (build_dir / "bin").glob("lib*.so*"):
        shutil.copy2(library, out / "lib" / library.name, follow_symlinks=False)  # links stay links


def ensure_python_bindings(build_: Build) -> str:
    """llama-cpp-python's Python code from the same sdist, installed into this environment without
    compiling llama.cpp again (it loads this build's libllama). Returns what it did."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        if version("llama_cpp_python") == LLAMA_CPP_PYTHON_VERSION:
            return f"llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}: already installed"
    except PackageNotFoundError:
        pass
    wheels = CACHE / "python-bindings"  # not the old folder of wheels that carried their own llama.cpp
    wheel = sorted(wheels.glob(f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}-*.whl"))
    if not wheel:
        env = {**os.environ, "CMAKE_ARGS": "-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF"}
        out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels),
                              str(sdist())], capture_output=True, text=True, env=env)
        wheel = sorted(wheels.glob(f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}-*.whl"))
        if out.returncode != 0 or not wheel:
            raise RunFailed(f"could not package llama-cpp-python's Python code: {(out.stderr or out.stdout)[-400:]}")
    uv = Path(sys.executable).with_name("uv")
    installer = [str(uv), "pip", "install", "--python", sys.executable] if uv.exists() else [
        sys.executable, "-m", "pip", "install"]
    out = subprocess.run([*installer, "--quiet", "--no-deps", str(wheel[-1])], capture_output=True, text=True)
    if out.returncode != 0:
        raise RunFailed(f"could not install llama-cpp-python's Python code: {(out.stderr or out.stdout)[-400:]}")
    return f"llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}: installed (Python code; loads {build_.lib})"


def start_background_build() -> bool:
    """Starts `iml build` in a process of its own (it outlives a page's rerun, and a crash in the
    compiler cannot touch the dashboard); False when a build is running already."""
    if _lock_is_held():
        return False
    progress_file().parent.mkdir(parents=True, exist_ok=True)
    progress_file().write_text("starting\n")
    subprocess.Popen([sys.executable, "-m", "iml_core", "build"], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return True


def import_llama_cpp():
    """llama-cpp-python, loading this machine's build of libllama: the one place the engine imports it."""
    if "llama_cpp" not in sys.modules:
        os.environ["LLAMA_CPP_LIB_PATH"] = str(require_build().lib)
    try:
        import llama_cpp
    except ImportError as e:
        raise UserError(f"llama-cpp-python is not installed ({e}); run `iml build`, which installs it with "
                        "llama.cpp") from None
    return llama_cpp
