"""The package's shape: imports point one way, the product never imports the bench, and the
dependencies are ranges with the exact set in the lock file."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "mnist_digits"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports, anywhere in the file (late imports too)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    candidate = f"{node.module}.{alias.name}"
                    found.add(candidate if candidate in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m in modules and m not in (name, "mnist_digits")}
    return graph


def test_no_import_loop():
    graph = import_graph()

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            for nxt in graph[stack.pop()]:
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    loops = sorted((a, b) for a, deps in graph.items() for b in deps if reaches(b, a))
    assert loops == []


def _importers(graph: dict[str, set[str]], target: str) -> set[str]:
    """The modules outside `target` (a module or package) that import something in it."""
    return {name for name, deps in graph.items()
            if any(d == target or d.startswith(target + ".") for d in deps)
            and not (name == target or name.startswith(target + "."))}


def test_only_the_bench_command_imports_the_bench():
    assert _importers(import_graph(), "mnist_digits.bench") == {"mnist_digits.commands.bench"}


def test_no_arrow_points_up():
    # cli -> commands -> library -> data, models, runs; the bench and the server sit on top of
    # the library. Nothing below imports what sits above it.
    graph = import_graph()
    assert _importers(graph, "mnist_digits.cli") <= {"mnist_digits.__main__"}
    assert _importers(graph, "mnist_digits.commands") <= {"mnist_digits.cli"}
    assert _importers(graph, "mnist_digits.serve") <= {"mnist_digits.commands.serve",
                                                       "mnist_digits.bench.loadtest",
                                                       "mnist_digits.bench.serving"}
    for leaf in ("mnist_digits.defaults", "mnist_digits.errors"):
        assert graph[leaf] == set(), leaf
    # The reader needs a model and the frames' maths, never training or its tools.
    reading = {d for name, deps in graph.items() if name.startswith("mnist_digits.reading")
               for d in deps}
    assert not reading & {f"mnist_digits.{m}" for m in (
        "train", "evaluate", "compare", "ensemble", "distill", "export", "cluster")}


def test_the_cli_module_and_every_product_module_stay_small():
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert sizes["cli.py"] <= 300
    assert max(sizes.values()) <= 450, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


def test_dependencies_are_ranges_and_the_lock_pins_each_one():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = {re.split(r"==", line)[0].lower().replace("_", "-"): line
            for line in (ROOT / "requirements.lock").read_text().splitlines()
            if line and not line.startswith("#")}
    assert all("==" in line for line in lock.values())
    extras = project["optional-dependencies"]
    requirements = [*project["dependencies"], *(r for name in extras for r in extras[name])]
    for requirement in requirements:
        # torch is pinned on purpose: its CPU build of that version is on these machines' disks.
        if not requirement.startswith("torch=="):
            assert "==" not in requirement.split(";")[0], requirement  # markers may use ==
        name = re.match(r"[A-Za-z0-9._-]+", requirement).group().lower().replace("_", "-")
        if "platform_machine != 'x86_64'" in requirement:
            continue  # the non-x86 TensorFlow wheel; the lock was made on x86-64
        assert name in lock, f"{name} is not in requirements.lock"
