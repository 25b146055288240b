"""The house's shape, held by tests: the engine's imports run one way, down its layers, with no
circle; and its registries are the one place an agent or a backend is named (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "iml_core"

# Low to high: a module may import from its own layer or below, never above. Within a layer the
# imports must still form no circle.
LAYERS = [
    ["errors", "status", "baseline_kinds", "formats", "diff", "attribution", "prompts", "gguf_header", "progress",
     "budget", "background", "grammar"],
    ["tasks", "llama_build", "decision_list", "truth", "catalogue"],
    ["backends", "agents", "models"],  # models finds GGUF files for the backends and asks servers through one
    ["learners"],  # how a step turns experience into notes; the loop above hands them its tools
    ["registry"],
    ["config"],
    ["learner"],
    ["store"],
    ["builders"],
    ["steps", "studies", "probe", "evaluation", "comparing", "analysis", "ladder_results", "export", "charts", "render",
     "report", "layout_probe", "tracking"],
    ["runner"],
    ["manager", "cluster"],
    ["cli", "__main__"],
]
# The same within a package whose modules have an order of their own; its __init__ re-exports them all.
PACKAGE_LAYERS = {
    "tasks": [["types"], ["domains", "csv_task", "rule_card"], ["spec"], ["generator"], ["presets"], ["files"]],
}
MAX_FILE_LINES, MAX_CLASS_LINES = 450, 250


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def engine_modules() -> dict[str, Path]:
    return {module_name(p): p for p in ENGINE.rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every engine module `path` imports, anywhere in it (a deferred import inside a function counts:
    it is an arrow all the same), except under `if TYPE_CHECKING:`, which never runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING"
               for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    own = module_name(path) if path.is_relative_to(ROOT) else None
    return {name for name in found if name in modules} - {own}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else module
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py: place it where its imports put it")


def test_the_engine_imports_down_its_layers_and_in_no_circle():
    modules = engine_modules()
    graph = {name: imports_of(path, modules) for name, path in modules.items() if name != "iml_core"}
    upward = [f"{a} -> {b}" for a, targets in graph.items() for b in targets
              if b != "iml_core" and layer_of(b) > layer_of(a)]
    assert not upward, f"imports running back up: {upward}"

    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                raise AssertionError(f"import circle: {' -> '.join(trail[trail.index(target):] + [target])}")
            if target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_a_package_s_modules_import_down_its_own_layers():
    modules = engine_modules()
    for package, layers in PACKAGE_LAYERS.items():
        prefix = f"iml_core.{package}."
        own = {name: path for name, path in modules.items() if name.startswith(prefix)}
        placed = {name for layer in layers for name in layer}
        assert {name.removeprefix(prefix) for name in own} == placed, (
            f"PACKAGE_LAYERS[{package!r}] must name every module of iml_core/{package}/ once")
        level = {prefix + name: index for index, layer in enumerate(layers) for name in layer}
        upward = [f"{a} -> {b}" for a, path in own.items() for b in imports_of(path, modules)
                  if b in level and level[b] > level[a]]
        back_to_init = [a for a, path in own.items() if f"iml_core.{package}" in imports_of(path, modules)]
        assert not upward, f"imports running back up inside iml_core/{package}/: {upward}"
        assert not back_to_init, f"modules importing their own package's __init__ (a circle): {back_to_init}"


def test_every_engine_file_and_class_stays_small():
    # Every module, not a chosen few: a file or class past these bars holds more than one job.
    long_files, long_classes = [], []
    for name, path in engine_modules().items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_FILE_LINES:
            long_files.append(f"{name} ({len(text.splitlines())} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                long_classes.append(f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long_files, f"engine files over {MAX_FILE_LINES} lines: {long_files}"
    assert not long_classes, f"engine classes over {MAX_CLASS_LINES} lines: {long_classes}"


def test_the_walk_sees_deferred_imports_and_ignores_type_checking_ones(tmp_path):
    modules = {"iml_core.config": Path(), "iml_core.registry": Path()}
    file = tmp_path / "probe.py"
    file.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from iml_core.config import X\n"
                    "def f():\n    from iml_core.registry import AGENTS\n", encoding="utf-8")
    assert imports_of(file, modules) == {"iml_core.registry"}


def test_store_and_runner_are_each_under_300_lines():
    runner = len((ENGINE / "runner.py").read_text(encoding="utf-8").splitlines())
    store = re.search(r"^class Store\b.*?(?=^\S|\Z)", (ENGINE / "store" / "__init__.py").read_text(encoding="utf-8"),
                      re.S | re.M)
    assert runner < 300
    assert store is not None and len(store.group(0).splitlines()) < 300
    assert all(len(p.read_text(encoding="utf-8").splitlines()) < 300 for p in (ENGINE / "store").glob("*.py"))


def test_agents_are_told_apart_only_in_the_registries():
    # `agent == "llm"` anywhere else means a new agent needs edits all over the house.
    pattern = re.compile(r"""\b\w*agent\w*\s*[!=]=\s*["'](offline|llm)["']""")
    roots = [ENGINE, ROOT / "pages", ROOT / "studio", ROOT / "app.py"]
    files = [p for root in roots for p in ([root] if root.is_file() else root.rglob("*.py"))]
    found = [f"{p.relative_to(ROOT)}:{n}" for p in files if p.name != "registry.py"
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not found, f"agents compared by name outside iml_core/registry.py: {found}"


def test_the_architecture_doc_names_only_files_that_exist_and_lists_the_layers_tested_here():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    # A path as the doc writes it: from the checkout (studio/engine.py), from the engine (store/records.py) or
    # inside the part it describes (studio/ ... widgets.py).
    named = set(re.findall(r"(?<![\w/.~-])((?:[\w-]+/)*[\w-]+\.py)\b", doc))
    named |= {m for m in re.findall(r"`((?:[\w-]+/)+)`", doc)}
    bases = (ROOT, ENGINE, ROOT / "studio")
    missing = sorted(path for path in named if not any((base / path).exists() for base in bases))
    assert len(named) > 15 and not missing, f"docs/ARCHITECTURE.md names files that are not there: {missing}"
    block = doc.split("```")[1]
    rows = [line.split("   ")[0].strip() for line in block.splitlines()
            if re.match(r"  [a-z_]", line) and not line.startswith("   ")]
    listed = [[name.strip().rstrip("/") for name in row.split(",")] for row in rows]
    assert listed == LAYERS, "the layers in docs/ARCHITECTURE.md §1 are not tests/test_architecture.py's LAYERS"
