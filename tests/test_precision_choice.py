"""`attnpick train`'s 4-bit or not: as asked; 4-bit on a GPU; on a CPU the unquantized model when it fits."""

from __future__ import annotations

import pytest

from attnpick.load.quantization import choose_4bit, parameter_count
from attnpick.training.config import TrainConfig

GB = 2**30


@pytest.mark.parametrize("asked", [True, False])
def test_an_asked_precision_is_kept_whatever_the_machine(asked):
    for device in ("cpu", "cuda"):
        assert choose_4bit(asked, device, 10**9, 1 * GB, "float32") == (asked, None)


def test_a_gpu_trains_in_4bit_as_the_guide_does():
    assert choose_4bit(None, "cuda", 2_400_000_000, 80 * GB, "bfloat16") == (True, None)


def test_a_cpu_trains_the_unquantized_model_when_it_fits_and_says_why():
    four_bit, line = choose_4bit(None, "cpu", 135_000_000, 20 * GB, "float32")
    assert four_bit is False
    assert line.startswith("CPU: training the unquantized model, not 4-bit") and "Pass --4bit" in line
    assert "0.5 GB" in line and "20.0 GB free" in line
    assert "(6 MB)" in choose_4bit(None, "cpu", 1_500_000, 20 * GB, "float32")[1]  # a tiny model in MB


def test_a_cpu_trains_in_4bit_when_the_weights_take_more_than_half_the_free_memory():
    four_bit, line = choose_4bit(None, "cpu", 2_400_000_000, 16 * GB, "float32")  # 8.9 GB of 16 GB
    assert four_bit is True and "--no-4bit" in line and "8.9 GB" in line
    assert choose_4bit(None, "cpu", 2_400_000_000, 16 * GB, "bfloat16")[0] is False  # 4.5 GB fits


def test_unknown_sizes_train_unquantized_on_a_cpu():
    assert choose_4bit(None, "cpu", None, None, "float32")[0] is False


def test_the_parameter_count_is_read_from_the_safetensors_headers(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5)}, str(tmp_path / "model-1.safetensors"))
    save_file({"c": torch.zeros(2, 2, 2)}, str(tmp_path / "model-2.safetensors"))
    assert parameter_count(tmp_path) == 12 + 5 + 8
    (tmp_path / "model-2.safetensors").write_bytes(b"broken")
    assert parameter_count(tmp_path) is None
    assert parameter_count(tmp_path / "nowhere") is None


def test_the_cli_offers_both_flags_and_leaves_the_choice_to_attnpick_by_default():
    from attnpick.cli.main import build_parser

    parser = build_parser()
    for argv, want in (([], None), (["--4bit"], True), (["--no-4bit"], False)):
        args = parser.parse_args(["train", "--output", "x", *argv])
        assert args.load_in_4bit is want
    with pytest.raises(ValueError, match="load_in_4bit must be True or False"):
        TrainConfig(output="x", load_in_4bit="yes").validate()


def test_every_rank_takes_4bit_when_one_rank_lacks_the_memory(monkeypatch, tmp_path, facts):
    """Under torchrun each rank measures its own free memory; one model for all, so 4-bit wins when a rank needs it."""
    from attnpick.load import distributed
    from attnpick.model.resolve import prepare
    from attnpick.training import run

    prepared = prepare("tiny-exaone")  # this CPU's facts: a CPU decides
    monkeypatch.setattr(run, "free_memory", lambda: 20 * GB)  # this rank: plenty
    config = TrainConfig(output=str(tmp_path / "run"))
    assert run._four_bit(config, prepared, facts, world=1)[0] is False
    monkeypatch.setattr(distributed, "all_true", lambda flag: False)  # another rank: it does not fit there
    four_bit, line = run._four_bit(config, prepared, facts, world=2)
    assert four_bit is True and "another rank" in line and "--no-4bit" in line
    monkeypatch.setattr(distributed, "all_true", lambda flag: flag)  # every rank fits
    assert run._four_bit(config, prepared, facts, world=2)[0] is False
    asked = TrainConfig(output=str(tmp_path / "run"), load_in_4bit=False)
    assert run._four_bit(asked, prepared, facts, world=2) == (False, None)  # asked: no collective at all
