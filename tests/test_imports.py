import json
import subprocess
import sys

import pytest

import attnpick


def test_import_attnpick_imports_no_torch():
    code = (
        "import sys, json, attnpick; attnpick.__version__;"
        "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'peft', 'unsloth', 'rich') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


@pytest.mark.parametrize("name", sorted(attnpick._LAZY))
def test_every_lazy_name_resolves_to_the_object_it_names(name):
    value = getattr(attnpick, name)
    assert not isinstance(value, type(attnpick)), f"attnpick.{name} is a module, not the {name} it should be"
    assert getattr(value, "__name__", name) == name or name.isupper()
    assert getattr(attnpick, name) is value  # a second lookup, after its module was imported, gives the same


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        attnpick.nope  # noqa: B018


def test_no_import_cycle(repo_root):
    """The same check as ../shared/tools/import-cycles, kept in the suite: data flows down one way."""
    import ast

    root = repo_root / "src" / "attnpick"
    modules = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t not in (name, "attnpick")}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path[path.index(nxt):], nxt])
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
