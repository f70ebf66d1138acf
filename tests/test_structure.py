"""The code's shape, checked: small modules, functions and classes; no import cycle and no import hidden inside a
function to dodge one; training methods named only by the registry (`methods/`)."""

from __future__ import annotations

import ast
from pathlib import Path

from distilwhisper import methods

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "distilwhisper"
LIMITS = {"module": 400, "function": 60, "class": 200}  # lines


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _top_level_imports(tree: ast.Module, name: str, is_package: bool) -> set[str]:
    """The package's modules a module imports when it is imported (type-checking-only imports left out)."""
    targets: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative
                    anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                targets.add(base)
                targets.update(f"{base}.{a.name}" for a in node.names)

    visit(tree.body)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = {t for t in _top_level_imports(ast.parse(path.read_text()), name, path.name == "__init__.py")
                 if t in modules and t != name}
        # importing a.b.c from outside a.b runs a.b's __init__ first (inside it, a sibling's import is Python's
        # normal package start-up, as is anything through the package root)
        edges |= {parent for t in edges for i in range(2, len(t.split(".")))
                  if not name.startswith((parent := ".".join(t.split(".")[:i])) + ".") and name != parent}
        graph[name] = {t for t in edges if t in modules and t not in (name, "distilwhisper")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (a list of modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_modules_functions_and_classes_stay_small():
    too_long = []
    for name, path in _modules().items():
        source = path.read_text()
        if source.count("\n") > LIMITS["module"]:
            too_long.append(f"module {name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            kind = ("function" if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    else "class" if isinstance(node, ast.ClassDef) else None)
            if kind and node.end_lineno - node.lineno + 1 > LIMITS[kind]:
                too_long.append(f"{kind} {name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long


def test_no_import_cycle():
    graph = _graph()
    assert {"distilwhisper.methods", "distilwhisper.train.config"} <= graph["distilwhisper.runs"]  # edges are seen
    assert "distilwhisper.train.loop" not in graph["distilwhisper.evaluate"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_of_the_package_inside_a_function_outside_the_cli():
    """A function-level import is how a cycle hides; the CLI's (cli.py and the `data` commands' parser) are there
    to start fast (`--help` loads no torch)."""
    hidden = []
    for name, path in _modules().items():
        if name in ("distilwhisper.cli", "distilwhisper.data.commands"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hidden += [f"{name}.{node.name}: {imp.module}" for imp in ast.walk(node)
                           if isinstance(imp, ast.ImportFrom) and (imp.module or "").startswith("distilwhisper")]
    assert not hidden, hidden


def test_method_names_are_compared_only_inside_methods():
    """`method == "ft"`, `method in ("distilwhisper", "clsr-ft")`: what a method does belongs to its module."""
    names = set(methods.names())
    found = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        if PACKAGE / "methods" in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            for operand in [node.left, *node.comparators]:
                strings = ([operand] if isinstance(operand, ast.Constant) else
                           list(operand.elts) if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [])
                found += [f"{path.relative_to(ROOT)}:{node.lineno}" for s in strings
                          if isinstance(s, ast.Constant) and s.value in names]
    assert not found, found
