"""The GGUF models on this machine, wherever people keep them.

Searched, in this order: ./models and the folders in $IML_MODELS; the Hugging Face hub cache;
LM Studio's folders; Ollama's store; the models installed from the catalogue (iml_core.catalogue).
Each file is described from its header (iml_core.gguf_header); a file whose header cannot be read is
listed with the reason.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Mapping

from iml_core.catalogue import catalogue, catalogue_model
from iml_core.errors import RunFailed, UserError
from iml_core.gguf_header import GGUFError, parameter_text, read_gguf_header

# The starter model: a real instruction-tuned chat model small enough for any CPU, a row of the
# model catalogue (iml_core.catalogue). Too small to apply a rule; it is there to try the LLM path.
STARTER_NAME = "starter"

# Catalogue models are named for where they came from and that they were checked.
CATALOGUE_SOURCE = "package registry, SHA-256 verified"
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_DEFAULT_HOST = "registry.ollama.ai"


@dataclass(frozen=True)
class FoundModel:
    name: str  # what --model and the Models page take
    path: str
    source: str  # where it was found: folder, hugging face, lm studio, ollama, CATALOGUE_SOURCE
    size_bytes: int | None = None
    architecture: str | None = None
    parameters: int | None = None
    quantization: str | None = None
    context_length: int | None = None
    chat_template: bool | None = None
    problem: str | None = None  # why it cannot be used; None when it can
    size_label: str = ""  # the size its makers name, when the file says (GGUFHeader.size_label)

    @property
    def usable(self) -> bool:
        return self.problem is None

    @property
    def parameters_text(self) -> str:
        return self.size_label or (parameter_text(self.parameters) if self.parameters else "")

    def to_dict(self) -> dict:
        return asdict(self)


def describe(name: str, path: Path, source: str) -> FoundModel:
    """A found file with what its header says, or with the reason it cannot be read."""
    try:
        size = path.stat().st_size
    except OSError as e:
        return FoundModel(name, str(path), source, problem=f"cannot read {path} ({e.strerror})")
    try:
        header = read_gguf_header(path)
    except GGUFError as e:
        return FoundModel(name, str(path), source, size, problem=str(e))
    return FoundModel(name, str(path), source, size, header.architecture, header.parameters, header.quantization,
                      header.context_length, header.chat_template, size_label=header.size_label)


def starter_model_path() -> Path | None:
    """The starter model's file when it is installed and verified."""
    return catalogue_model(STARTER_NAME).installed()


def _from_catalogue() -> Iterator[FoundModel]:
    for model in catalogue().values():
        if (path := model.installed()) is not None:
            yield FoundModel(model.name, str(path), CATALOGUE_SOURCE)


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def _gguf_files(folder: Path) -> list[Path]:
    """Every *.gguf below a folder (following links, as the hub cache's snapshots are links)."""
    found = []
    for root, _, files in os.walk(folder, followlinks=True):
        found += [Path(root) / f for f in files if f.lower().endswith(".gguf")]
    return sorted(found)


def _folders(env: Mapping[str, str], cwd: Path) -> list[Path]:
    extra = [Path(p).expanduser() for p in env.get("IML_MODELS", "").split(":") if p.strip()]
    return [cwd / "models", *extra]


def _from_folders(env, cwd) -> Iterator[FoundModel]:
    for folder in _folders(env, cwd):
        for path in _gguf_files(folder):
            yield FoundModel(path.relative_to(folder).as_posix(), str(path), "folder")


def _from_hugging_face(env) -> Iterator[FoundModel]:
    hub = Path(env["HF_HOME"]) / "hub" if env.get("HF_HOME") else _home(env) / ".cache" / "huggingface" / "hub"
    for repo in sorted(hub.glob("models--*")):
        org_name = repo.name.removeprefix("models--").replace("--", "/")
        for snapshot in sorted((repo / "snapshots").glob("*")):
            for path in _gguf_files(snapshot):
                yield FoundModel(f"{org_name}/{path.relative_to(snapshot).as_posix()}", str(path), "hugging face")


def _from_lm_studio(env) -> Iterator[FoundModel]:
    for root in (_home(env) / ".lmstudio" / "models", _home(env) / ".cache" / "lm-studio" / "models"):
        for path in _gguf_files(root):
            yield FoundModel(path.relative_to(root).as_posix(), str(path), "lm studio")


def _from_ollama(env) -> Iterator[FoundModel]:
    root = Path(env["OLLAMA_MODELS"]) if env.get("OLLAMA_MODELS") else _home(env) / ".ollama" / "models"
    manifests = root / "manifests"
    for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
        parts = manifest.relative_to(manifests).parts
        if len(parts) < 3:
            continue
        host, *namespace, model, tag = parts
        name = f"{model}:{tag}"
        if namespace and namespace != ["library"]:
            name = "/".join(namespace) + "/" + name
        if host != OLLAMA_DEFAULT_HOST:
            name = f"{host}/{name}"
        try:
            layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers", [])
            digest = next(layer["digest"] for layer in layers if layer.get("mediaType") == OLLAMA_MODEL_LAYER)
        except (OSError, ValueError, AttributeError, KeyError, StopIteration):
            yield FoundModel(name, str(manifest), "ollama",
                             problem=f"the Ollama manifest {manifest} names no model layer; pull the model again")
            continue
        blob = root / "blobs" / str(digest).replace(":", "-")
        if not blob.is_file():
            yield FoundModel(name, str(blob), "ollama",
                             problem=f"the Ollama manifest {manifest} points at {blob}, which is missing; "
                                     f"run `ollama pull {model}:{tag}` again")
            continue
        yield FoundModel(name, str(blob), "ollama")


def find_models(env: Mapping[str, str] | None = None, cwd: Path | None = None, *,
                read_headers: bool = True) -> list[FoundModel]:
    """Every GGUF model found on this machine, each file once (the first place it was found),
    described from its header; without `read_headers`, only named and located (to resolve a name
    without reading every file)."""
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    found, seen = [], set()
    sources = [_from_folders(env, cwd), _from_hugging_face(env), _from_lm_studio(env), _from_ollama(env),
               _from_catalogue()]
    for source in sources:
        for model in source:
            where = os.path.realpath(model.path)
            if where not in seen:
                seen.add(where)
                readable = read_headers and model.problem is None
                found.append(describe(model.name, Path(model.path), model.source) if readable else model)
    return found


def resolve_model(name_or_path: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """The GGUF file a --model value means: a path to a file as given, else a listed model's name."""
    text = name_or_path.strip()
    path = Path(text).expanduser()
    if text and (path.exists() or os.sep in text and text.lower().endswith(".gguf")):
        return path  # a path: the backend checks it, and says what is wrong with it
    matches = [describe(m.name, Path(m.path), m.source) if m.problem is None else m
               for m in find_models(env, cwd, read_headers=False) if m.name == text]
    if not matches:
        if text in catalogue():
            raise UserError(f"the model {text} is not installed; run `iml models --install {text}` (or install it "
                            "on the Models page), or give the path of a .gguf file")
        raise UserError(f"no model file or listed model named {text!r}; `python -m iml_core models` lists the "
                        "models on this machine, or give the path of a .gguf file")
    if len(matches) > 1:
        raise UserError(f"{len(matches)} models are named {text!r} ({', '.join(m.path for m in matches)}); "
                        "give the path of the one you mean")
    if not matches[0].usable:
        raise UserError(matches[0].problem)
    return Path(matches[0].path)


def is_local_model(name_or_path: str) -> bool:
    """Whether a --model value names a GGUF here (a file, or a listed model) rather than a model
    that an OpenAI-compatible server serves."""
    try:
        resolve_model(name_or_path)
    except UserError:
        return False
    return True


def default_model_choice(found: list[FoundModel]) -> dict:
    """The model settings to start from when none was chosen: the only usable model here, run in a
    managed llama-server; nothing when there are none or several to choose between."""
    usable = [m for m in found if m.usable]
    return {"backend": "llama-server", "model": usable[0].name} if len(usable) == 1 else {}


def server_models(base_url: str, *, api_key: str | None = None, timeout: float = 5.0) -> list[str]:
    """The models an OpenAI-compatible server serves (its /v1/models); RunFailed naming the
    server when it cannot say (UserError for a base URL that is no URL)."""
    import openai

    from iml_core.backends import OPENAI_URL
    from iml_core.backends.openai_compat import check_base_url

    url = check_base_url(base_url)
    client = openai.OpenAI(api_key=api_key or "not-needed", base_url=url or None, timeout=timeout, max_retries=0)
    where = url or OPENAI_URL
    try:
        return sorted(m.id for m in client.models.list())
    except openai.APIStatusError as e:
        raise RunFailed(f"the server at {where} answered HTTP {e.status_code} when asked for its models; "
                        "check the base URL (it usually ends in /v1) and the key") from None
    except openai.APITimeoutError:
        raise RunFailed(f"the server at {where} did not list its models within {timeout:g} s; "
                        "is it overloaded?") from None
    except (openai.APIError, ValueError):
        raise RunFailed(f"cannot reach a server at {where}; is it running, and is the base URL right?") from None
