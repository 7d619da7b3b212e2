import json
import subprocess
import sys


def test_import_attnpick_imports_no_torch():
    code = (
        "import sys, json, attnpick; attnpick.__version__;"
        "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'peft', 'unsloth', 'rich') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_lazy_names_resolve():
    import attnpick

    assert attnpick.choose.__name__ == "choose"
    assert "sdpa" in attnpick.CATALOG
