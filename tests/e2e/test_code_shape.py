"""The code's shape, checked: short functions where the loop decides, tests where they belong.

No function in `correctors/` or `watcher/daemon/` runs past 60 lines, counted from its `def`
to its last line, docstring and comments included. Sixty lines is one screen: a reader sees a
whole function, its stages and its exits at once, and a function that needs more does more than
one stage and is split along them (the correction pipeline: prepare, train and rank, export and
judge, record). These two folders are where the model is judged and changed, so they are where
a hidden branch costs most.

Tests mirror the code (`tests/watcher/...`, `tests/correctors/...`, `tests/storage/...`,
`tests/e2e/`), so no test module sits at the top of `tests/`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support import ROOT

MAX_LINES = 60
SHORT_FOLDERS = ("correctors", "watcher/daemon")
TOP_LEVEL_ALLOWED = {"__init__.py", "conftest.py"}

Function = ast.FunctionDef | ast.AsyncFunctionDef


def functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, Function]]:
    """Every function in `tree` with its qualified name (`Class.method`, `outer.inner`)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            yield name, node
            yield from functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")
        else:
            yield from functions(node, prefix)


def long_functions(folder: Path, root: Path = ROOT) -> list[str]:
    """`path:line name (N lines)` for each function of `folder` over MAX_LINES, longest first
    (paths relative to `root`)."""
    found: list[tuple[int, str]] = []
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, node in functions(tree):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_LINES:
                where = f"{path.relative_to(root)}:{node.lineno}"
                found.append((lines, f"{where} {name} ({lines} lines)"))
    return [text for _, text in sorted(found, key=lambda item: -item[0])]


def test_no_function_in_the_deciding_code_is_longer_than_a_screen():
    too_long = [text for folder in SHORT_FOLDERS for text in long_functions(ROOT / folder)]
    assert not too_long, (
        f"functions over {MAX_LINES} lines (split them along their stages):\n  "
        + "\n  ".join(too_long)
    )


def test_the_counter_sees_methods_nested_functions_and_docstrings(tmp_path):
    def body(indent: int) -> str:  # MAX_LINES - 2 statements
        return "".join(f"{' ' * indent}x{i} = {i}\n" for i in range(MAX_LINES - 2))

    (tmp_path / "m.py").write_text(
        "class C:\n"
        f'    def fits(self):\n        """Doc."""\n{body(8)}'  # 1 + 1 + 58 = 60 lines
        f'    def over(self):\n        """Doc."""\n{body(8)}        return x0\n'  # 61
        f"def outer():\n    def inner():\n{body(8)}        return 1\n"  # inner: 60
        "    return inner\n"  # outer: 62
    )
    names = [line.split()[1] for line in long_functions(tmp_path, root=tmp_path)]
    assert names == ["outer", "C.over"]


def test_no_test_module_at_the_top_of_tests():
    top = sorted(p.name for p in (ROOT / "tests").glob("*.py") if p.name not in TOP_LEVEL_ALLOWED)
    assert not top, f"test modules belong in the folder of the code they test: {top}"
