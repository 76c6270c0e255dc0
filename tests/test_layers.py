"""The architecture of ../shared/DESIGN.md, kept by a test: layers import only downward, modules import
in no circle, function-local imports say why they are not at the top, and modules stay small.

The imports are read from the source (every `import`, at the top or inside a function), not run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "fmnist"

# What each part may not import (DESIGN.md: data → models → engine → workflows → cli, report beside
# workflows; the two file formats and the inference runtimes below the engine).
FORBIDDEN = {
    "fmnist.data": ("fmnist.models", "fmnist.engine", "fmnist.inference", "fmnist.report", "fmnist.workflows",
                    "fmnist.cli", "fmnist.modelfile", "fmnist.export"),
    "fmnist.images": ("fmnist.models", "fmnist.engine", "fmnist.inference", "fmnist.report", "fmnist.workflows",
                      "fmnist.cli", "fmnist.modelfile", "fmnist.data"),
    "fmnist.runfolder": ("fmnist.models", "fmnist.engine", "fmnist.inference", "fmnist.report", "fmnist.workflows",
                         "fmnist.cli", "fmnist.modelfile"),
    "fmnist.device": ("fmnist.engine", "fmnist.models", "fmnist.report", "fmnist.workflows", "fmnist.cli"),
    "fmnist.models": ("fmnist.engine", "fmnist.inference", "fmnist.report", "fmnist.workflows", "fmnist.cli",
                      "fmnist.modelfile", "fmnist.data"),
    "fmnist.modelfile": ("fmnist.engine", "fmnist.inference", "fmnist.report", "fmnist.workflows", "fmnist.cli"),
    "fmnist.engine": ("fmnist.report", "fmnist.workflows", "fmnist.cli", "fmnist.inference", "fmnist.export",
                      "fmnist.tuning"),
    # the search space and the study's storage: over the engine, under the workflows
    "fmnist.tuning": ("fmnist.report", "fmnist.workflows", "fmnist.cli", "fmnist.inference", "fmnist.export"),
    "fmnist.inference": ("fmnist.engine", "fmnist.report", "fmnist.workflows", "fmnist.cli", "fmnist.export"),
    "fmnist.export": ("fmnist.engine", "fmnist.report", "fmnist.workflows", "fmnist.cli"),
    # report draws from what it is handed: no training, no model loading, no feature maps of its own
    "fmnist.report": ("fmnist.engine", "fmnist.models", "fmnist.modelfile", "fmnist.workflows", "fmnist.cli",
                      "fmnist.export"),
    "fmnist.workflows": ("fmnist.cli",),
}
MAX_LINES = 320  # DESIGN.md: a module over ~300 lines is asking to be split


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported fmnist module, line, inside a function) for every import in the module's source."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    local_lines = {node.lineno for function in ast.walk(tree) if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for node in ast.walk(function) if isinstance(node, (ast.Import, ast.ImportFrom))}
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from fmnist import models` imports the module fmnist.models; `from x import name`, module x
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found += [(target, node.lineno, node.lineno in local_lines) for target in targets if target.startswith("fmnist")]
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _within(module: str, part: str) -> bool:
    return module == part or module.startswith(part + ".")


def test_layers_import_only_downward():
    wrong = [f"{name}:{line} imports {target}"
             for name, imports in GRAPH.items()
             for part, forbidden in FORBIDDEN.items() if _within(name, part)
             for target, line, _ in imports if any(_within(target, bad) for bad in forbidden)]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    edges = {name: sorted({target for target, _, _ in imports if target in MODULES and target != name})
             for name, imports in GRAPH.items()}
    visiting, done, cycles = set(), set(), []

    def visit(node: str, trail: list[str]) -> None:
        if node in done:
            return
        if node in visiting:
            cycles.append(" → ".join(trail[trail.index(node):] + [node]))
            return
        visiting.add(node)
        for target in edges.get(node, []):
            visit(target, trail + [node])
        visiting.discard(node)
        done.add(node)

    for module in sorted(edges):
        visit(module, [])
    assert not cycles, "\n".join(cycles)


def test_function_local_imports_say_why():
    """An import inside a function is there to keep something off the start-up path (torch, Pillow,
    matplotlib, an optional dependency); a comment on it (or just above its block) says so."""
    unexplained = []
    for name, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for function in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for node in [n for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom))]:
                row = node.lineno - 1
                explained = "#" in lines[row]
                while not explained and row > 0:
                    above = lines[row - 1].strip()
                    if above.startswith("#") or (above.startswith(("import ", "from ")) and "#" in above):
                        explained = True
                    elif above == "" or above.startswith(("import ", "from ")):
                        row -= 1
                        continue
                    break
                if not explained:
                    unexplained.append(f"{path.relative_to(SRC)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not unexplained, "\n".join(unexplained)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name):
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(SRC)} has {lines} lines; split it"


def test_the_light_commands_do_not_import_torch():
    """`fmnist --help`, option parsing and the ONNX prediction path never wait for torch."""
    code = ("import sys\nimport fmnist.cli, fmnist.inference, fmnist.engine.config\n"
            "print(sorted(m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    # A refused option is refused before a recipe asks the hardware (torch) which of its values apply.
    code = ("import sys\nfrom fmnist.engine.config import ConfigError, build_config\n"
            "try:\n    build_config(recipe='fast', optimizer='rmsprop')\nexcept ConfigError as exc:\n    print(exc)\n"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["options: optimizer: expected one of sgd, adam, adamw, got 'rmsprop'", "False"]
