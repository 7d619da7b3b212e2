"""A .gguf file as a model: read once into a cached transformers folder (`attnpick.model.gguf_import`) that loads
and answers as the model written into the file; a file that is not GGUF is one clear line."""

from __future__ import annotations

import pytest
import torch

from attnpick.errors import UsageError
from attnpick.model import gguf_import
from attnpick.model.resolve import prepare, resolve


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """tiny-exaone as a plain Llama checkpoint, written as an f32 GGUF file by attnpick's own writer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from attnpick.export import gguf_file
    from attnpick.model import exaone, tiny

    folder = exaone.converted_folder(tiny.ensure())
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    out = tmp_path_factory.mktemp("gguf")
    path = gguf_file.save_gguf(model, tokenizer, out, "f32", source_folder=str(folder), name="tiny-llama")[0]
    return path, model, tokenizer


def test_a_gguf_file_is_read_once_into_a_folder_that_answers_as_the_file(tiny_gguf, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, model, tokenizer = tiny_gguf
    folder, found_in = resolve(str(path))
    assert found_in == "gguf" and (folder / gguf_import.DONE).is_file()
    config = (folder / "config.json").read_text()
    assert '"model_type": "llama"' in config and "quantization_config" not in config
    again = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(folder))
    prompt = [{"role": "user", "content": "서울은 어떤 곳인가요?"}]
    ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=False)
    assert tok.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=False) == ids
    with torch.no_grad():
        want, got = model(torch.tensor([ids])).logits, again(torch.tensor([ids])).logits
    assert (got - want).abs().max() < 1e-2 * want.abs().max()
    # cached: the second time reads nothing
    monkeypatch.setattr(gguf_import, "convert", lambda *a: pytest.fail("converted twice"))
    assert resolve(str(path))[0] == folder
    assert prepare(str(path)).architecture == "native"


def test_a_changed_file_is_read_again(tiny_gguf, tmp_path):
    import os
    import shutil

    copy = tmp_path / "model.gguf"
    shutil.copy(tiny_gguf[0], copy)
    first = gguf_import.model_folder(copy)
    os.utime(copy, (1, 1))
    assert gguf_import.model_folder(copy) != first


def test_a_file_that_is_not_gguf_is_one_line(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf file")
    with pytest.raises(UsageError, match="not a GGUF file"):
        resolve(str(fake))
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(UsageError, match=r"is a file, not a folder.*\.gguf file"):
        resolve(str(other))


def test_files_exported_from_a_gguf_model_are_named_without_its_suffix():
    from attnpick.export.gguf_file import _stem

    assert _stem("/models/SmolLM2-135M-Instruct.Q4_1.gguf") == "SmolLM2-135M-Instruct.Q4_1"
    assert _stem("LGAI-EXAONE/EXAONE-3.5-2.4B-Instruct") == "EXAONE-3.5-2.4B-Instruct"


def test_a_full_disk_while_converting_is_exit_2_and_leaves_no_folder(tiny_gguf, tmp_path, monkeypatch):
    import errno
    import shutil

    from attnpick.util import files

    copy = tmp_path / "full.gguf"
    shutil.copy(tiny_gguf[0], copy)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("transformers.PreTrainedModel.save_pretrained", full)
    with pytest.raises(files.DiskFullError, match="No space left to convert") as caught:
        gguf_import.model_folder(copy)
    assert caught.value.exit_code == 2
    root = gguf_import.cache.cache_dir() / "from-gguf"
    assert [p for p in root.iterdir() if not (p / gguf_import.DONE).is_file()] == []  # nothing half-written
