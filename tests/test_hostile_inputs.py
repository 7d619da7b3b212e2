"""Round two of inputs a hostile user tries (issue 30): a data folder's every file whatever its name, relative
paths; broken adapters and checkpoints (truncated, empty, another rank, pickled) refused before loading in export,
chat, from_pretrained and --resume; an unfinished run named as one; a full disk anywhere in export; chat's template,
its standard input and a --max-new-tokens beyond the context; an empty --output."""

from __future__ import annotations

import errno
import json
import re
import shutil
import subprocess
import sys

import pytest

from attnpick.errors import UsageError
from attnpick.util import files
from tests.helpers import one_line, run_cli


class NotATensor:
    """What a malicious pickle names: anything but tensors and plain values, which torch's safe loader refuses."""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished run with a checkpoint (2 steps, saved every step)."""
    out = tmp_path_factory.mktemp("runs") / "done"
    proc = run_cli("train", "--output", str(out), "--max-steps", "2", "--save-steps", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _copy(run, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("*.lock"))
    return target


# --- data folders ---------------------------------------------------------------------------------------------------

def _folder(root, names=("train.jsonl", "extra.jsonl")):
    folder = root / "data" / "folder"
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("".join(json.dumps({"instruction": f"q{i} {name}", "output": f"a{i}"}) + "\n"
                                           for i in range(5)), encoding="utf-8")
    return folder


def test_a_data_folder_reads_every_file_whatever_its_name_relative_or_absolute(tmp_path, monkeypatch):
    from attnpick.training.data import validate

    folder = _folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    for source in ("data/folder", str(folder)):
        stats = validate(source)
        assert stats.rows == 10 and "extra.jsonl: 5 rows" in stats.dataset and "train.jsonl: 5 rows" in stats.dataset
    assert validate("data/folder", "train").rows == 5  # a split named: datasets' split of the file names
    with pytest.raises(UsageError, match="no split 'test'"):
        validate("data/folder", "test")


def test_train_on_a_relative_data_folder_trains_on_every_row(tmp_path):
    _folder(tmp_path, ("train.jsonl", "more.jsonl", "sub/x.jsonl"))
    proc = subprocess.run([sys.executable, "-m", "attnpick", "train", "--data", "data/folder", "--output", "out",
                           "--max-steps", "1", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["data"]["rows"] == 15


# --- adapters and checkpoints -----------------------------------------------------------------------------------------

def _break(adapter, how):
    weights = adapter / "adapter_model.safetensors"
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "empty":
        weights.write_bytes(b"")
    elif how == "other-rank":
        config = json.loads((adapter / "adapter_config.json").read_text())
        (adapter / "adapter_config.json").write_text(json.dumps({**config, "r": config["r"] * 2}))
    elif how == "pickled":
        import torch

        weights.unlink()
        torch.save({"weights": NotATensor()}, adapter / "adapter_model.bin")


BROKEN = {"truncated": "not a readable safetensors file", "empty": "is empty (0 bytes)",
          "other-rank": "says r=", "pickled": "a pickle, which attnpick never loads"}


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_a_broken_adapter_is_one_line_in_export_chat_and_from_pretrained(run, tmp_path, how):
    from attnpick import FastLanguageModel

    broken = _copy(run, tmp_path)
    _break(broken / "adapter", how)
    for args in (("export", str(broken), "--output", str(tmp_path / "o")), ("chat", str(broken), "--prompt", "hi")):
        line = one_line(run_cli(*args))
        assert BROKEN[how] in line and "adapter" in line, line
    assert not (tmp_path / "o").exists()
    with pytest.raises(UsageError, match=re.escape(BROKEN[how])):
        FastLanguageModel.from_pretrained(str(broken / "adapter"), load_in_4bit=False)


def test_resume_refuses_a_checkpoint_file_torch_cannot_read_safely_naming_it(run, tmp_path):
    import torch

    copy = _copy(run, tmp_path)
    (copy / "train_report.json").unlink()  # an unfinished run: resumable
    checkpoint = max(copy.glob("checkpoint-*"))
    torch.save({"state": NotATensor()}, checkpoint / "optimizer.pt")
    line = one_line(run_cli("train", "--output", str(copy), "--resume", "--max-steps", "3"))
    assert "optimizer.pt" in line and "reads safely" in line, line


def test_resume_refuses_a_checkpoint_with_a_truncated_adapter(run, tmp_path):
    copy = _copy(run, tmp_path)
    (copy / "train_report.json").unlink()
    _break(max(copy.glob("checkpoint-*")), "truncated")
    line = one_line(run_cli("train", "--output", str(copy), "--resume", "--max-steps", "3"))
    assert "not a readable safetensors file" in line, line


def test_an_unfinished_run_is_named_as_one_with_resume(run, tmp_path):
    copy = _copy(run, tmp_path)
    (copy / "train_report.json").unlink()
    shutil.rmtree(copy / "adapter")
    for args in (("export", str(copy), "--output", str(tmp_path / "o")), ("chat", str(copy), "--prompt", "hi")):
        line = one_line(run_cli(*args))
        assert "did not finish" in line and "--resume" in line and "checkpoint-2" in line, line


# --- a full disk in export ------------------------------------------------------------------------------------------

def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["merged", "gguf", "modelfile"])
def test_a_full_disk_in_export_is_one_error_and_no_folder(run, tmp_path, monkeypatch, where):
    import gguf
    import huggingface_hub

    from attnpick.export import trained

    if where == "merged":
        monkeypatch.setattr(huggingface_hub, "save_torch_state_dict", _no_space)
    elif where == "gguf":
        def short_write(*_args, **_kwargs):
            raise OSError("2048 requested and 1560 written")  # numpy's tofile, under gguf's writer

        monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", short_write)
    else:
        from types import SimpleNamespace

        from attnpick.export import modelfile

        monkeypatch.setattr(modelfile, "files", SimpleNamespace(write_text=_no_space))
    out = tmp_path / "exported"
    config = trained.ExportConfig(model=str(run), output=str(out), format="merged" if where == "merged" else "gguf",
                                  quantization=None if where == "merged" else "f16")
    with pytest.raises(files.DiskFullError, match="No space left"):
        trained.export_trained(config)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []  # nothing half-written, no staging


# --- chat -----------------------------------------------------------------------------------------------------------

def test_chat_refuses_a_template_the_sandbox_refuses_in_one_line(tmp_path):
    from attnpick.model import tiny

    model = tmp_path / "model"
    shutil.copytree(tiny.ensure(), model)
    (model / "chat_template.jinja").write_text("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    line = one_line(run_cli("chat", str(model), "--prompt", "hi"))
    assert "chat template" in line, line


def test_chat_reads_standard_input_as_utf8_and_refuses_other_bytes_in_one_line(run):
    proc = subprocess.run([sys.executable, "-m", "attnpick", "chat", str(run), "--max-new-tokens", "2"],
                          input="안녕\n".encode() + b"\xff\xfe\x00bad\n", capture_output=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    stderr = proc.stderr.decode("utf-8", "replace")
    assert "not UTF-8" in stderr and "Traceback" not in stderr, stderr


def test_max_new_tokens_beyond_the_context_is_capped_with_one_line(tmp_path):
    from attnpick.model import tiny

    model = tmp_path / "short"
    shutil.copytree(tiny.ensure(), model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 48}))
    proc = run_cli("chat", str(model), "--prompt", "hi", "--max-new-tokens", "1000000000000", "--max-seq-length",
                   "48", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"more than {model}'s context of 48 tokens" in proc.stderr, proc.stderr[-2000:]


def test_an_empty_output_is_refused_naming_the_option():
    line = one_line(run_cli("train", "--output", "", "--max-steps", "1"))
    assert "--output is empty" in line, line
