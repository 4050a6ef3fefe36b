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
