"""The layout docs/architecture.md describes, held by reading the source (ast) and running the CLI.

Imports are read with ast, every one of them: at the top, inside functions and under
``if TYPE_CHECKING``, so a lazy import cannot hide a cycle or a reach into private modules.
"""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dcgan_cli import api, hookspecs, plugins
from dcgan_cli.core.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dcgan_cli"
DOCS = ROOT / "docs"

# Layer of each subpackage (docs/architecture.md): a module imports its own layer or lower.
LAYERS = {"core": 0, "data": 1, "training": 2, "engines": 3, "latent": 4, "report": 5, "commands": 6}
TOP_LEVEL = {  # modules directly in dcgan_cli/
    "dcgan_cli": 0,
    "dcgan_cli.hookspecs": 0,
    "dcgan_cli.plugins": 0,
    "dcgan_cli.api": 6,
    "dcgan_cli.cli": 6,
    "dcgan_cli.__main__": 6,
}
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every dcgan_cli module ``path`` imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from pkg import mod` imports pkg.mod when that is a module.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def layer_of(module: str) -> int:
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    return LAYERS[module.split(".")[1]]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = package_modules()
    known = set(modules)
    return {name: imported_modules(path, known) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as a list of modules, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package's __init__ runs before its modules; importing a parent package is not a use.
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_a_layer_above_its_own(graph):
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_every_subpackage_has_a_layer():
    for path in PACKAGE.iterdir():
        if path.is_dir() and (path / "__init__.py").is_file():
            assert path.name in LAYERS, f"dcgan_cli/{path.name}/ has no layer in docs/architecture.md and LAYERS"
    for name in package_modules():
        layer_of(name)  # a top-level module missing from TOP_LEVEL raises KeyError


def test_no_module_over_500_lines():
    long = {
        name: n for name, path in package_modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def distribution_sources() -> list[Path]:
    files = []
    for group in ("engines", "plugins"):
        for path in (ROOT / group).rglob("*.py"):
            rel = path.relative_to(ROOT).parts
            if "tests" in rel or "build" in rel or path.name == "conftest.py" or path.name.startswith("test_"):
                continue
            files.append(path)
    return files


def test_plugins_import_only_the_public_api():
    assert len(distribution_sources()) >= 5  # the engines and the analysis plugin are found
    reaching = []
    for path in distribution_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "dcgan_cli" and name != "dcgan_cli.api":
                    reaching.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not reaching, "plugins must import from dcgan_cli.api only:\n" + "\n".join(reaching)


def test_every_public_name_resolves_and_is_documented():
    docs = (DOCS / "plugins.md").read_text()
    assert len(api.__all__) >= 40
    for name in api.__all__:
        assert getattr(api, name) is not None, name
        assert f"`{name}`" in docs, f"dcgan_cli.api.{name} is not documented in docs/plugins.md"
    with pytest.raises(AttributeError, match="docs/plugins.md"):
        api.no_such_name  # noqa: B018


def test_every_hook_has_a_one_line_docstring_and_is_documented():
    docs = (DOCS / "plugins.md").read_text()
    names = [n for n in dir(hookspecs) if n.startswith("dcgan_")]
    assert len(names) >= 6
    for name in names:
        doc = getattr(hookspecs, name).__doc__
        assert doc and len(doc.strip().splitlines()) == 1, name
        assert f"### {name}" in docs, f"{name} is not documented in docs/plugins.md"


# Names inside a run folder: only RunPaths (core/runs.py) joins them onto a path.
RUN_FOLDER_NAMES = {
    "config.json", "checkpoints", "latest.json", "generator.safetensors", "discriminator.safetensors",
    "samples", "sheets", "metrics.jsonl", "losses.png", "quality.jsonl", "best.json",
    "generator-best.safetensors", "exports", "export.json", "bench.json", "concepts.json",
    "figures", "analysis", "labelers", "report.html", "tensorboard", ".lock",
}  # fmt: skip


def test_run_folder_paths_are_spelled_only_in_run_paths():
    spelled = []
    for name, path in package_modules().items():
        if name == "dcgan_cli.core.runs":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Div)
                and isinstance(node.right, ast.Constant)
                and node.right.value in RUN_FOLDER_NAMES
            ):
                spelled.append(f"{path.relative_to(ROOT)}:{node.lineno} joins {node.right.value!r}")
            # A module constant holding such a name is the same spelling one step removed.
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and node.value.value in RUN_FOLDER_NAMES
            ):
                spelled.append(f"{path.relative_to(ROOT)}:{node.lineno} names {node.value.value!r}")
    assert not spelled, "use RunPaths (core/runs.py):\n" + "\n".join(spelled)


# ---------------------------------------------------------------- plugin manager and registries


def test_pm_is_the_plugin_manager_and_registers_directly():
    import pluggy

    assert isinstance(plugins.pm, pluggy.PluginManager)
    assert plugins.pm is plugins.get_plugin_manager()

    class Extra:
        @hookspecs.hookimpl
        def dcgan_register_detectors(self, register):
            register("extra-boxes", lambda images: [[] for _ in images])

    plugins.pm.register(Extra(), name="extra-in-test")
    try:
        from dcgan_cli.latent.detectors import get_detectors

        assert "extra-boxes" in get_detectors()
    finally:
        plugins.pm.unregister(name="extra-in-test")


def test_one_rule_for_duplicate_names():
    registry = Registry("dataset")
    first, other = object(), object()
    assert registry.add("mnist", first, "builtin")
    assert registry.add("mnist", first, "builtin")  # the same object again: harmless
    assert not registry.add("mnist", other, "thirdparty")
    assert registry["mnist"] is first and registry.plugin_of("mnist") == "builtin"
    (warning,) = registry.warnings
    assert "'thirdparty'" in warning and "'builtin'" in warning and "keeps it" in warning


@pytest.mark.parametrize("kind", ["dataset", "engine", "labeler", "detector"])
def test_every_registry_refuses_a_taken_name_and_keeps_the_builtin(kind, monkeypatch):
    """A plugin registering a built-in's name: one warning naming both, the built-in kept."""
    from dcgan_cli.data.catalog import get_datasets
    from dcgan_cli.engines.base import get_engines
    from dcgan_cli.engines.torch_engine import TorchEngine
    from dcgan_cli.latent.detectors import get_detectors
    from dcgan_cli.latent.labelers.base import Labeler, get_labelers

    class Impostor(TorchEngine):
        pass

    class ImpostorLabeler(Labeler):
        pass

    hooks = {
        "dataset": ("dcgan_register_datasets", lambda register: register("digits", lambda options: None), get_datasets),
        "engine": ("dcgan_register_engines", lambda register: register(Impostor), get_engines),
        "labeler": ("dcgan_register_labelers", lambda register: register("digits", ImpostorLabeler), get_labelers),
        "detector": (
            "dcgan_register_detectors",
            lambda register: register("windows", lambda images: []),
            get_detectors,
        ),
    }
    hook_name, body, getter = hooks[kind]
    before = getter()
    plugin = type("Impostor", (), {hook_name: staticmethod(hookspecs.hookimpl(body))})()
    plugins.pm.register(plugin, name=f"impostor-{kind}")
    heard: list[str] = []
    monkeypatch.setattr(plugins, "_listener", heard.append)
    try:
        after = getter()
    finally:
        plugins.pm.unregister(name=f"impostor-{kind}")
    assert after.keys() == before.keys()
    name = "torch" if kind == "engine" else ("windows" if kind == "detector" else "digits")
    if kind in ("engine", "labeler"):
        assert after[name] is before[name]
    assert any(f"'impostor-{kind}'" in w and f"{kind} {name!r}" in w for w in heard), heard


def test_a_builtin_plugin_that_fails_to_import_is_an_error_naming_it(monkeypatch):
    monkeypatch.setattr(plugins, "BUILTIN_PLUGINS", (*plugins.BUILTIN_PLUGINS, "dcgan_cli.no_such_module"))
    with pytest.raises(plugins.BuiltinPluginError, match=r"built-in plugin dcgan_cli\.no_such_module failed to load"):
        plugins.reload()
    monkeypatch.undo()
    plugins.reload()


def test_the_cli_stops_on_a_broken_builtin_with_one_line(tmp_path):
    # A sitecustomize makes one built-in module fail to import in a fresh interpreter.
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class Broken:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'dcgan_cli.commands.walk':\n"
        "            raise ImportError('simulated bug')\n"
        "sys.meta_path.insert(0, Broken())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "dcgan_cli", "--help"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "dcgan_cli.commands.walk" in lines[0] and "simulated bug" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- a fast command line

HEAVY = ("torch", "onnx", "onnxruntime", "sklearn", "onnxscript", "scipy", "matplotlib")

PROBE = """
import json, runpy, sys
argv, heavy_names = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
sys.argv = ["dcgan", *argv]
try:
    runpy.run_module("dcgan_cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & heavy_names)
print("\\nPROBE " + json.dumps({"code": code, "heavy": heavy}), file=sys.__stderr__)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["plugins"],
        ["plugins", "--json"],
        ["datasets"],
        ["train", "--help"],
        ["sample", "--help"],
        ["export", "--help"],
        ["arithmetic", "--help"],
        ["invert", "--help"],
        ["classify", "--help"],
        ["fid", "--help"],
        ["bench", "--help"],
    ],
    ids=" ".join,
)
def test_the_command_line_answers_without_heavy_libraries(argv):
    env = {**os.environ, "COLUMNS": "100"}
    env.pop("DCGAN_LOAD_PLUGINS", None)  # every installed plugin registers, as for a user
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)], env=env, capture_output=True, text=True
    )
    found = re.search(r"^PROBE (.*)$", result.stderr, re.M)
    assert found, result.stderr
    probe = json.loads(found.group(1))
    assert probe["code"] in (0, None), result.stderr
    assert probe["heavy"] == [], f"`dcgan {' '.join(argv)}` imported {probe['heavy']}"
