"""Structure measures of the source tree: lines, the largest modules, long functions, ``dict[str, Any]``,
names in ``__all__`` and CLI command module sizes. ``python scripts/structure.py [SRC]`` prints them;
``tests/test_structure.py`` holds the limits that hold today.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Measures:
    lines: int = 0
    modules: dict[str, int] = field(default_factory=dict)
    long_functions: dict[str, int] = field(default_factory=dict)
    dict_any: int = 0
    all_names: int = 0


#: Modules of ``cli/`` that are shared infrastructure, not commands: the flag generator, the flag spellings,
#: the model options, the printed output, the app and the entry point. The 80-line limit is for commands.
CLI_SHARED = frozenset({"__init__.py", "app.py", "flags.py", "schema_flags.py", "model_options.py", "console.py"})


def _all_names(node: ast.AST) -> int:
    """How many names an ``__all__ = [...]`` (annotated or not) lists; 0 for any other node."""
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign):
        targets = [node.target]
    else:
        return 0
    value = getattr(node, "value", None)
    named = any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)
    return len(value.elts) if named and isinstance(value, (ast.List, ast.Tuple)) else 0


def measure(src: Path, *, function_limit: int = 60) -> Measures:
    m = Measures()
    for path in sorted(src.rglob("*.py")):
        text = path.read_text()
        rel = str(path.relative_to(src.parent))
        n = len(text.splitlines())
        m.lines += n
        m.modules[rel] = n
        m.dict_any += text.count("dict[str, Any]")
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > function_limit:
                    m.long_functions[f"{rel}:{node.name}"] = length
            m.all_names += _all_names(node)
    return m


#: Names a user imports from a submodule by its path (the README's examples and the library calls behind
#: ``evaluate``, ``bn-analysis`` and ``compare``), beyond those other rooms import.
DOCUMENTED_PATHS = {
    "nrflab.measure.metrics": {"accuracy", "robust_accuracy"},
    "nrflab.measure.ligs": {"ligs", "ligs_per_sample"},
    "nrflab.measure.evaluation": {"evaluate_reference"},
    "nrflab.measure.bn_analysis": {"analyze_reference"},
    "nrflab.measure.compare": {"compare_models"},
}


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _declared_all(tree: ast.Module) -> list[str] | None:
    """The names a module's top-level ``__all__`` lists (None: it has none)."""
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        value = getattr(node, "value", None)
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and isinstance(
            value, (ast.List, ast.Tuple)
        ):
            return [e.value for e in value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return None


def room_interfaces(src: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per submodule: the names its ``__all__`` declares, and the names it should declare -- those another room
    (or the README) imports from it, less the names its package's ``__init__`` already exports. A name only
    siblings of its room import is room-internal and not listed."""
    paths = {_module_name(p, src): p for p in src.rglob("*.py")}
    trees = {m: ast.parse(p.read_text()) for m, p in paths.items()}
    room = {m: (m.split(".") + [""])[1] for m in paths}
    wanted: dict[str, set[str]] = {m: set(DOCUMENTED_PATHS.get(m, ())) for m in paths}
    for me, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in paths:
                if room[node.module] != room[me]:
                    wanted[node.module] |= {a.name for a in node.names if f"{node.module}.{a.name}" not in paths}
    declared: dict[str, set[str]] = {}
    should: dict[str, set[str]] = {}
    for m, path in paths.items():
        if path.name == "__init__.py":
            continue
        package = trees.get(m.rsplit(".", 1)[0])
        exported = set(_declared_all(package) or ()) if package is not None else set()
        defined = {
            n.name for n in trees[m].body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        }
        defined |= {
            t.id for n in trees[m].body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
        }
        defined |= {
            n.target.id for n in trees[m].body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
        }
        declared[m] = set(_declared_all(trees[m]) or ())
        should[m] = {n for n in wanted[m] if not (n in defined and n in exported)}
    return declared, should


def main() -> None:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "src" / "nrflab")
    m = measure(src)
    print(f"source lines: {m.lines} in {len(m.modules)} modules")
    big = {k: v for k, v in m.modules.items() if v > 500}
    print(f"modules over 500 lines: {len(big)} {sorted(big.items(), key=lambda kv: -kv[1])}")
    print(f"functions over 60 lines: {len(m.long_functions)}")
    for k, v in sorted(m.long_functions.items(), key=lambda kv: -kv[1]):
        print(f"  {v:4d} {k}")
    print(f"dict[str, Any]: {m.dict_any}")
    print(f"names in __all__: {m.all_names}")
    cli = {k: v for k, v in m.modules.items() if "/cli/" in k and Path(k).name not in CLI_SHARED}
    print(
        f"CLI command modules (shared: {', '.join(sorted(CLI_SHARED))}) over 80 lines: {sorted(((k, v) for k, v in cli.items() if v > 80), key=lambda kv: -kv[1])}"
    )


if __name__ == "__main__":
    main()
