"""TRL as Unsloth's notebooks call it (attnpick.compat.trl_keywords), once attnpick.FastLanguageModel is imported;
a modern TRL call unchanged; `import attnpick` alone patches nothing."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from tests.helpers import trl_on_this_machine

EXAONE_TEXT = ("[|system|][|endofturn|]\n[|user|]서울은 어떤 곳인가요?\n[|assistant|]대한민국의 수도입니다."
               "[|endofturn|]\n")


@pytest.fixture(scope="module")
def loaded():
    from attnpick import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained("tiny-exaone", max_seq_length=256, dtype=None,
                                                         load_in_4bit=True)
    model = FastLanguageModel.get_peft_model(model, r=8, lora_alpha=16, use_gradient_checkpointing="unsloth")
    return model, tokenizer


def _data(n=8):
    from datasets import Dataset

    return Dataset.from_list([{"text": EXAONE_TEXT}] * n)


@trl_on_this_machine
def test_an_unsloth_notebooks_sft_call_trains(loaded, tmp_path):
    from trl import SFTConfig, SFTTrainer

    from attnpick import is_bfloat16_supported

    model, tokenizer = loaded
    with pytest.warns(UserWarning, match="attnpick translated Unsloth's TRL keywords") as caught:
        trainer = SFTTrainer(
            model=model, tokenizer=tokenizer, train_dataset=_data(), dataset_text_field="text", max_seq_length=256,
            packing=False, dataset_num_proc=1,
            args=SFTConfig(per_device_train_batch_size=2, gradient_accumulation_steps=1, warmup_steps=0,
                           max_steps=2, learning_rate=2e-4, fp16=not is_bfloat16_supported(),
                           bf16=is_bfloat16_supported(), logging_steps=1, optim="adamw_torch", weight_decay=0.01,
                           lr_scheduler_type="linear", seed=3407, output_dir=str(tmp_path), report_to="none"))
    text = " ".join(str(w.message) for w in caught)
    assert "tokenizer=" in text and "processing_class" in text and "max_seq_length" in text
    assert trainer.args.max_length == 256 and trainer.args.dataset_text_field == "text" and not trainer.args.fp16
    assert trainer.processing_class is tokenizer
    stats = trainer.train()
    assert stats.global_step == 2


@trl_on_this_machine
def test_training_arguments_become_an_sft_config(loaded, tmp_path):
    from transformers import TrainingArguments
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = loaded
    with pytest.warns(UserWarning, match="TrainingArguments"):
        trainer = SFTTrainer(model=model, tokenizer=tokenizer, train_dataset=_data(), dataset_text_field="text",
                             max_seq_length=128, args=TrainingArguments(output_dir=str(tmp_path), max_steps=1,
                                                                        per_device_train_batch_size=2,
                                                                        learning_rate=1e-4, report_to="none"))
    assert isinstance(trainer.args, SFTConfig)
    assert (trainer.args.max_steps, trainer.args.learning_rate, trainer.args.max_length) == (1, 1e-4, 128)


def test_sft_config_without_precision_follows_the_machine_then_the_trainers_model(loaded, tmp_path):
    """No state carried from one load to the next: the config follows this machine, the trainer its own model."""
    from types import SimpleNamespace

    from trl import SFTConfig

    from attnpick.compat import trl_keywords

    with pytest.warns(UserWarning, match=r"bf16=False, fp16=False \(this machine has no bfloat16 GPU\)"):
        config = SFTConfig(output_dir=str(tmp_path), max_seq_length=64)
    assert (config.bf16, config.fp16, config.max_length) == (False, False, 64)
    # a config made on a bfloat16 GPU, given a float16 model that attnpick loaded there
    args = SimpleNamespace(bf16=True, fp16=False, **{trl_keywords.DEFAULTED: True})
    model = SimpleNamespace(attnpick_report=SimpleNamespace(dtype="float16", device="cuda:0"))
    notes = trl_keywords._model_precision({"args": args, "model": model})
    assert (args.bf16, args.fp16) == (False, True) and "the model is float16 on cuda:0" in notes[0]
    given = SimpleNamespace(bf16=True, fp16=False, **{trl_keywords.DEFAULTED: False})  # the user said bf16
    assert trl_keywords._model_precision({"args": given, "model": model}) == [] and given.bf16


def test_a_modern_trl_call_is_exactly_as_without_the_patch(loaded, tmp_path):
    from trl import SFTConfig

    model, tokenizer = loaded
    kwargs = {"output_dir": str(tmp_path), "max_length": 128, "bf16": False, "report_to": "none", "max_steps": 1}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        patched = SFTConfig(**kwargs)
    assert not [w for w in caught if "attnpick" in str(w.message)]
    plain = SFTConfig.__new__(SFTConfig)
    SFTConfig.__init__.__wrapped__(plain, **kwargs)  # TRL's own __init__
    assert patched.to_dict() == plain.to_dict()
    from attnpick.compat.trl_keywords import trainer_keywords

    modern = {"model": model, "args": patched, "processing_class": tokenizer, "train_dataset": _data()}
    assert trainer_keywords(modern, SFTConfig) == (modern, [])


def test_install_is_idempotent_and_marked():
    import trl

    from attnpick.compat import trl_keywords

    before = (trl.SFTTrainer.__init__, trl.SFTConfig.__init__)
    assert trl_keywords.install() and trl_keywords.install()
    assert (trl.SFTTrainer.__init__, trl.SFTConfig.__init__) == before
    assert getattr(trl.SFTTrainer.__init__, trl_keywords.MARK) is True


def test_plain_import_attnpick_patches_nothing():
    code = ("import attnpick, trl; trl.SFTConfig; "
            "print(getattr(trl.SFTTrainer.__init__, '_attnpick_unsloth_keywords', False))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"


def test_rendered_text_keeps_one_end_of_turn_token(loaded, tmp_path):
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = loaded
    trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=_data(2),
                         args=SFTConfig(output_dir=str(tmp_path), max_length=256, bf16=False, report_to="none",
                                        dataset_text_field="text"))
    decoded = tokenizer.decode(trainer.train_dataset[0]["input_ids"])
    # the system turn's and the answer's: TRL would have appended a third after the trailing newline
    assert decoded.endswith("대한민국의 수도입니다.[|endofturn|]") and decoded.count("[|endofturn|]") == 2


def test_unsloths_dataset_text_field_trains_on_the_text_even_beside_conversations(loaded, tmp_path):
    """Unsloth's notebooks keep the ShareGPT `conversations` column next to the rendered `text`; TRL would prefer the
    conversations (and render them again with a from/value template that then renders nothing)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = loaded
    rows = [{"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}], "text": EXAONE_TEXT}]
    with pytest.warns(UserWarning, match="trains on 'text', not its conversations column"):
        trainer = SFTTrainer(model=model, tokenizer=tokenizer, train_dataset=Dataset.from_list(rows * 2),
                             dataset_text_field="text",
                             args=SFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", max_length=256))
    assert "서울은 어떤 곳인가요?" in tokenizer.decode(trainer.train_dataset[0]["input_ids"])
    # A modern call (the field in SFTConfig) keeps TRL's own choice: the conversations, rendered by the template.
    modern = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=Dataset.from_list(rows * 2),
                        args=SFTConfig(output_dir=str(tmp_path), bf16=False, report_to="none", max_length=256,
                                       dataset_text_field="text"))
    assert "서울은 어떤 곳인가요?" not in tokenizer.decode(modern.train_dataset[0]["input_ids"])


def test_streamed_datasets_are_trimmed_too():
    """An IterableDataset (streaming) has no `desc` for map and may not know its columns up front."""
    from datasets import Dataset

    from attnpick.compat.trl_keywords import _one_end_of_turn

    class Tokenizer:
        eos_token = "[|endofturn|]"

    class Args:
        dataset_text_field = "text"

    streamed = Dataset.from_list([{"text": EXAONE_TEXT}]).to_iterable_dataset()
    kwargs = {"args": Args(), "processing_class": Tokenizer(), "train_dataset": streamed}
    _one_end_of_turn(kwargs)
    assert next(iter(kwargs["train_dataset"]))["text"] == EXAONE_TEXT.rstrip()
