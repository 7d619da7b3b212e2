"""docs/layout.md is the map of the code, checked against it: every module of src/attnpick is in its table, once,
and no module imports one of a layer above its own (lazy imports inside functions count too)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "attnpick"


def layers() -> dict[str, int]:
    """module path (relative to src/attnpick) -> its layer's rank, 0 at the top, from docs/layout.md's table."""
    rank, out = -1, {}
    for line in (ROOT / "docs" / "layout.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        if len(cells) != 3 or cells[0] == "layer":
            continue
        if cells[0]:
            rank += 1
        for module in re.findall(r"`([\w/]+\.py)`", cells[1]):
            assert module not in out, f"{module} is listed twice"
            out[module] = rank
    return out


def imports(path: Path) -> set[str]:
    """The attnpick modules `path` imports, as paths relative to src/attnpick."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "attnpick":
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "attnpick"]
        for name in names:
            parts = name.split(".")[1:]
            for candidate in ("/".join(parts) + ".py", "/".join(parts) + "/__init__.py"):
                if (SRC / candidate).is_file():
                    found.add(candidate)
    return found


def modules() -> list[str]:
    return sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py"))


def test_every_module_is_on_the_map():
    listed = layers()
    missing = [m for m in modules() if m not in listed and not m.endswith("/__init__.py")]
    assert missing == [], f"docs/layout.md does not list {missing}"
    assert sorted(set(listed) - set(modules())) == [], "docs/layout.md lists modules that do not exist"


def test_no_module_imports_a_layer_above_its_own():
    listed = layers()

    def rank(module: str) -> int:
        if module in listed:
            return listed[module]
        package = module.rsplit("/", 1)[0]  # a package's __init__: the layer of its modules
        return min(r for m, r in listed.items() if m.startswith(package + "/"))

    upward = [f"{m} ({rank(m)}) imports {dep} ({rank(dep)})" for m in modules() for dep in sorted(imports(SRC / m))
              if not dep.endswith("/__init__.py") and rank(dep) < rank(m)]
    assert upward == []
