"""The docs stand alone and the Korean ones say what the English ones say: every code block, `--option`, number
and heading of an English file is in its Korean twin, and no link or path leaves the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
TWINS = [("README.md", "README.ko.md"), ("docs/guide.md", "docs/guide.ko.md"), ("docs/layout.md", "docs/layout.ko.md"),
         ("docs/hub-kernels.md", "docs/hub-kernels.ko.md"), ("docs/facts.md", "docs/facts.ko.md"),
         ("docs/inputs.md", "docs/inputs.ko.md"), ("docs/gpu-check.md", "docs/gpu-check.ko.md"),
         ("docs/commands.md", "docs/commands.ko.md"), ("docs/notebooks.md", "docs/notebooks.ko.md"),
         ("docs/development.md", "docs/development.ko.md"), ("docs/terms.md", "docs/terms.ko.md"),
         ("docs/real-model.md", "docs/real-model.ko.md")]
CODE = re.compile(r"^```[a-z]*\n.*?^```", re.S | re.M)
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6}) ", re.M)


def read(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def prose(text: str) -> str:
    return CODE.sub("", text)


@pytest.mark.parametrize("english, korean", TWINS, ids=[k for _, k in TWINS])
def test_the_korean_twin_carries_every_code_block_option_number_and_section(english, korean):
    en, ko = read(english), read(korean)
    missing_code = [block.splitlines()[1][:60] for block in CODE.findall(en) if block not in ko]
    assert missing_code == [], f"{korean} lacks code blocks of {english}"
    missing_options = sorted(set(OPTION.findall(en)) - set(OPTION.findall(ko)))
    assert missing_options == [], f"{korean} lacks options of {english}"
    missing_numbers = sorted(set(NUMBER.findall(prose(en))) - set(NUMBER.findall(ko)))
    assert missing_numbers == [], f"{korean} lacks numbers of {english}"
    assert [len(h) for h in HEADING.findall(prose(en))] == [len(h) for h in HEADING.findall(prose(ko))], \
        f"{korean} has other sections than {english}"


@pytest.mark.parametrize("name", sorted({n for pair in TWINS for n in pair}))
def test_no_link_or_path_leaves_the_repository(name):
    text = read(name)
    assert "../shared" not in text and "attention-selection-guide" not in text
    for target in LINK.findall(text):
        assert not target.startswith(("http://", "https://", "/")), f"{name} links outside: {target}"
        path = (ROOT / name).parent / target.split("#", 1)[0]
        assert path.resolve().is_relative_to(ROOT) and path.exists(), f"{name}: broken link {target}"


def test_the_qlora_script_shown_is_the_example_file():
    script = read("examples/qlora_trl.py")
    for name in ("docs/notebooks.md", "docs/notebooks.ko.md"):
        assert f"```python\n{script}```" in read(name), name


def test_the_readme_shows_both_quickstart_commands():
    for name in ("README.md", "README.ko.md"):
        text = read(name)
        assert "./dev run" in text and "./dev test" in text and ".venv" in text


def _shape(text: str) -> list[str]:
    """A printed run's lines without what changes from run to run: numbers, the run folder, spacing."""
    out = []
    for line in text.strip().splitlines():
        line = re.sub(r"\S*runs/quickstart-[\d-]+", "<run>", line)
        out.append(" ".join(re.sub(r"\d[\d,.]*", "#", line).split()))
    return out


def _installed(distribution: str) -> bool:
    """Installed as attnpick's probe sees it (package metadata), not merely imported by another test here."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(distribution)
    except PackageNotFoundError:
        return False
    return True


def test_what_you_will_see_is_what_dev_run_prints(tmp_path):
    """The README's 'What you will see' block has the lines `./dev run` prints (`attnpick train --output
    runs/quickstart-<time>`), line for line; only the numbers may differ."""

    extra = [d for d in ("unsloth", "flash-attn", "xformers", "kernels") if _installed(d)]
    if extra:
        pytest.skip(f"the README shows a machine without {', '.join(extra)}; this one has it")
    block = re.search(r"### What you will see.*?```text\n(.*?)```", read("README.md"), re.S)
    assert block, "README.md: no 'What you will see' block"
    proc = run_cli("train", "--output", str(tmp_path / "runs" / "quickstart-20261202-000000"),
                   env={"COLUMNS": "1000", "ATTNPICK_CACHE_DIR": str(tmp_path / "cache")})  # a first run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _shape(proc.stdout) == _shape(block.group(1))


def test_every_test_the_inputs_table_names_exists():
    named = set(re.findall(r"`(tests/[\w/]+\.py)`", read("docs/inputs.md")))
    assert named and all((ROOT / name).is_file() for name in named), sorted(named)
