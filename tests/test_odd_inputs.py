"""Issue 22's inputs, each with its promised result: a folder of data files read whole, odd and empty data, encodings,
models without a usable chat template or with too short a context, and the Python API's arguments. `attnpick train`
is run as the user runs it: exit 2 and one line, nothing written, or read with every row counted."""

from __future__ import annotations

import json
import shutil

import pytest

from attnpick.errors import UsageError
from attnpick.model import tiny
from tests.helpers import machine, one_line, run_cli, train_cli


def _rows(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"instruction": f"{i} 더하기 {i}는?", "output": f"{2 * i}입니다."} for i in range(start, start + n)]


def test_a_folder_of_jsonl_csv_and_parquet_trains_on_all_30_rows_named_per_file(tmp_path):
    import pandas as pd

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _rows(10)),
                                    encoding="utf-8")
    pd.DataFrame(_rows(10, 10)).to_csv(folder / "b.csv", index=False)
    pd.DataFrame(_rows(10, 20)).to_parquet(folder / "c.parquet")
    proc = train_cli("--data", str(folder), "--output", str(tmp_path / "run"), "--max-steps", "1", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)["data"]
    assert data["rows"] == 30 and data["examples"] == 30
    assert all(f"{name}: 10 rows" in data["dataset"] for name in ("a.jsonl", "b.csv", "c.parquet")), data["dataset"]


def test_files_of_one_folder_with_other_columns_are_one_clear_error(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps(_rows(1)[0]) + "\n")
    (folder / "b.jsonl").write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    line = one_line(train_cli("--data", str(folder), "--output", str(tmp_path / "run")))
    assert "cannot be read as one dataset" in line and not (tmp_path / "run").exists()


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


ROW = json.dumps({"instruction": "안녕?", "output": "네, 안녕하세요."}, ensure_ascii=False)


@pytest.mark.parametrize("name, content, needle", [
    ("zero.jsonl", b"", "the file is empty (0 bytes): it has no rows"),
    ("empty.json", b"[]", "it has no rows"),
    ("header.csv", b"instruction,output\n", "it has no rows"),
    ("blank.jsonl", b"\n \n\n", "only blank lines: it has no rows"),
    ("latin1.jsonl", json.dumps({"instruction": "café", "output": "x"}, ensure_ascii=False).encode("latin-1"),
     "not UTF-8 text"),
    ("cp949.jsonl", ROW.encode("cp949"), "CP949"),
], ids=["0-byte", "empty-array", "header-only-csv", "blank-lines", "latin-1", "cp949"])
def test_empty_and_undecodable_data_is_one_line_saying_so(tmp_path, name, content, needle):
    data = _write(tmp_path / name, content)
    line = one_line(train_cli("--data", str(data), "--output", str(tmp_path / "run")))
    assert needle in line and not (tmp_path / "run").exists()


def test_a_zero_row_parquet_has_no_rows(tmp_path):
    import pandas as pd

    pd.DataFrame({"instruction": pd.Series([], dtype=str), "output": pd.Series([], dtype=str)}).to_parquet(
        tmp_path / "zero.parquet")
    line = one_line(train_cli("--data", str(tmp_path / "zero.parquet"), "--output", str(tmp_path / "run")))
    assert "it has no rows" in line


def test_utf16_jsonl_sharegpt_role_content_and_numeric_csv_cells_are_read(tmp_path):
    from transformers import AutoTokenizer

    from attnpick.model import tiny as tiny_module
    from attnpick.training.data import load_examples

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_module.ensure()))
    utf16 = _write(tmp_path / "ps.jsonl", (ROW + "\n").encode("utf-16"))  # what PowerShell 5.1's > writes
    sharegpt = tmp_path / "sg.jsonl"
    sharegpt.write_text(json.dumps({"conversations": [{"role": "user", "content": "안녕?"},
                                                      {"role": "assistant", "content": "네."}]},
                                   ensure_ascii=False) + "\n", encoding="utf-8")
    numbers = tmp_path / "n.csv"
    numbers.write_text("instruction,output\n2 더하기 2는?,4\n코드는?,007\n", encoding="utf-8")
    for path, rows in ((utf16, 1), (sharegpt, 1), (numbers, 2)):
        _, stats = load_examples(str(path), tokenizer, 256)
        assert (stats.rows, stats.examples, stats.dropped.count) == (rows, rows, 0), (path, stats)


@pytest.mark.parametrize("columns, needle", [
    ("instruction=q,instruction=r", "names instruction more than once"),
    ("instruction=q,input=q", "maps instruction and input to the same column 'q'"),
])
def test_columns_mistakes_say_what_is_wrong_with_the_mapping(tmp_path, columns, needle):
    line = one_line(train_cli("--columns", columns, "--output", str(tmp_path / "run")))
    assert needle in line


def _model_without_template(tmp_path, template: str | None):
    folder = tmp_path / "model"
    shutil.copytree(tiny.ensure(), folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    if template is not None:
        (folder / "chat_template.jinja").write_text(template)
    return folder


@pytest.mark.parametrize("template, needle", [
    (None, "has no chat template"),
    ("{% for m in messages %}{{ m.content }", "does not render a conversation"),
    ("{{ raise_exception('no') }}", "does not render a conversation"),
], ids=["none", "syntax-error", "raises"])
def test_a_model_without_a_usable_chat_template_is_refused_before_training(tmp_path, template, needle):
    folder = _model_without_template(tmp_path, template)
    line = one_line(train_cli(str(folder), "--output", str(tmp_path / "run")))
    assert needle in line and "--chat-template FILE" in line and not (tmp_path / "run").exists()


def test_chat_template_file_trains_a_model_that_has_none_and_is_saved_with_the_adapter(tmp_path):
    folder = _model_without_template(tmp_path, None)
    template = tmp_path / "exaone.jinja"
    template.write_text(tiny.CHAT_TEMPLATE, encoding="utf-8")
    proc = train_cli(str(folder), "--chat-template", str(template), "--output", str(tmp_path / "run"),
                     "--max-steps", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(tmp_path / "run" / "adapter")).chat_template == tiny.CHAT_TEMPLATE


def test_max_seq_length_above_the_models_context_is_refused(tmp_path):
    line = one_line(train_cli("--max-seq-length", "40000", "--output", str(tmp_path / "run")))
    assert "above tiny-exaone's context of 32768 tokens" in line


def test_the_python_api_names_the_bad_argument():
    from attnpick import FastLanguageModel

    for kwargs, needle in ((dict(model_name=None), "model_name"), (dict(load_in_4bit="yes"), "load_in_4bit"),
                           (dict(max_seq_length=0), "max_seq_length")):
        with pytest.raises(UsageError, match=needle):
            FastLanguageModel.from_pretrained(**{"model_name": "tiny-exaone", **kwargs})
    model, _ = FastLanguageModel.from_pretrained("tiny-exaone", max_seq_length=256)
    for kwargs, needle in ((dict(r=0), "^r must"), (dict(r=2.5), "^r must"), (dict(lora_dropout=1.5), "lora_dropout"),
                           (dict(bias="banana"), "bias"), (dict(target_modules=[3]), "target_modules")):
        with pytest.raises(UsageError, match=needle):
            FastLanguageModel.get_peft_model(model, **kwargs)
    assert issubclass(UsageError, ValueError)


@pytest.mark.parametrize("variable, value, needle", [
    ("ATTNPICK_DISABLE_BACKENDS", "garbage", "'garbage' is not a backend"),
    ("ATTNPICK_DISABLE_BACKENDS", "sdpa@one", "is not NAME or NAME@RANK"),
    ("ATTNPICK_BACKEND", "fastest", "is not a backend"),
    ("RANK", "zero", "$RANK must be a whole number"),
    ("ATTNPICK_CACHE_DIR", "FILE", "is a file, not a folder"),
    ("ATTNPICK_CACHE_DIR", "LOOP", "symbolic link that points back to itself"),
    ("ATTNPICK_CACHE_DIR", "LOOP_ITSELF", "symbolic link that points back to itself"),
], ids=["disable-garbage", "disable-bad-rank", "backend", "rank", "cache-file", "cache-symlink-loop",
        "cache-is-the-loop"])
def test_environment_variables_are_checked_like_options(tmp_path, variable, value, needle):

    if value == "FILE":
        value = str(tmp_path / "cache.txt")
        (tmp_path / "cache.txt").write_text("x")
    elif value.startswith("LOOP"):
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
        value = str(tmp_path / "a") if value == "LOOP_ITSELF" else str(tmp_path / "a" / "cache")
    line = one_line(run_cli("doctor", env={variable: value}, timeout=120))
    assert needle in line and (variable in line or variable == "RANK"), line


def test_a_read_only_cache_folder_is_refused_naming_the_variable(tmp_path):
    import os

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        # root writes into a 0500 folder; /proc takes no new folder from anyone
        target = str(folder / "cache") if not os.access(folder, os.W_OK) else "/proc/attnpick-cache"
        line = one_line(run_cli("doctor", env={"ATTNPICK_CACHE_DIR": target}, timeout=120))
        assert "ATTNPICK_CACHE_DIR" in line and "cannot be used" in line
    finally:
        folder.chmod(0o700)


def test_a_facts_file_naming_an_unknown_hub_backend_is_refused(tmp_path):

    doc = machine("linux", "H100").to_dict()
    doc["hub"]["flash_kernels"] = {"flash_attention_9": {"repo": "someone/fa9", "version": 1, "devices": ["cuda"]}}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    line = one_line(run_cli("plan", "--env", str(path), timeout=120))
    assert "'hub.flash_kernels.flash_attention_9' names no backend" in line
