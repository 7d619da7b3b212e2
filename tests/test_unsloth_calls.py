"""The rest of Unsloth's notebook calls on attnpick: UnslothTrainer / UnslothTrainingArguments (the embeddings'
own learning rate, embed_tokens and lm_head trained whole), FastModel's LoRA switches, list-of-parts messages,
DPO / ORPO / KTO keywords checked against TRL's own signatures, warmup_ratio, to_sharegpt / standardize_sharegpt /
the dataset-level apply_chat_template, the Ollama Modelfile, generate given a BatchEncoding, and plain text in
`attnpick train` (continued pretraining)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import shutil
import warnings

import pytest

from attnpick.errors import UsageError
from attnpick.model import tiny
from tests.helpers import trl_on_this_machine
from tests.test_chat_templates import GOLDEN, tokenizer

PARTS = [{"role": "system", "content": [{"type": "text", "text": "S"}]},
         {"role": "user", "content": [{"type": "text", "text": "Q"}, {"type": "image"}]},
         {"role": "assistant", "content": [{"type": "text", "text": "A"}]}]


def _load(four_bit=False):
    from attnpick import FastLanguageModel

    return FastLanguageModel.from_pretrained("tiny-exaone", max_seq_length=128, load_in_4bit=four_bit)


def _texts(n=8):
    from datasets import Dataset

    return Dataset.from_list([{"text": "서울은 대한민국의 수도이다. 한강이 흐른다.[|endofturn|]"}] * n)


# --- chat templates -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_list_of_parts_messages_render_as_their_text(name):
    from attnpick.chat_templates import get_chat_template

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = get_chat_template(tokenizer(), name)
    assert tok.apply_chat_template(PARTS, tokenize=False) == GOLDEN[name]


def test_the_vocabulary_warning_says_the_template_was_installed():
    from attnpick.chat_templates import get_chat_template

    tok = tokenizer()
    with pytest.warns(UserWarning, match="installed as asked") as caught:
        get_chat_template(tok, "gemma-3")
    assert "kept" not in str(caught[0].message) and "<start_of_turn>" in tok.chat_template


# --- dataset helpers ------------------------------------------------------------------------------------------------

def test_to_sharegpt_merges_columns_with_optional_parts_and_extends_conversations():
    from datasets import Dataset

    from attnpick import to_sharegpt

    data = Dataset.from_list([{"instruction": f"q{i}", "input": "x" if i % 2 else None, "output": f"a{i}"}
                              for i in range(6)])
    out = to_sharegpt(data, merged_prompt="{instruction}[[\nInput:\n{input}]]", output_column_name="output")
    assert out.column_names == ["conversations"]
    assert out[0]["conversations"] == [{"from": "human", "value": "q0"}, {"from": "gpt", "value": "a0"}]
    assert out[1]["conversations"][0]["value"] == "q1\nInput:\nx"
    three = to_sharegpt(data, merged_prompt="{instruction}", conversation_extension=3)
    assert all(len(row) == 6 for row in three["conversations"])
    assert three["conversations"] == to_sharegpt(data, merged_prompt="{instruction}",
                                                 conversation_extension=3)["conversations"]  # seeded
    assert three[0]["conversations"][:2] == out[0]["conversations"]
    with pytest.raises(UsageError, match="merged_prompt names answer"):
        to_sharegpt(data, merged_prompt="{answer}")
    with pytest.raises(UsageError, match="conversation_extension"):
        to_sharegpt(data, merged_prompt="{instruction}", conversation_extension=0)
    with pytest.raises(UsageError, match="standardize_sharegpt"):
        to_sharegpt(out)


def test_standardize_sharegpt_reads_each_turns_keys_so_an_empty_first_conversation_changes_nothing():
    from datasets import Dataset

    from attnpick import standardize_sharegpt

    rows = [{"conversations": []},
            {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}]
    out = standardize_sharegpt(Dataset.from_list(rows))
    assert out[0]["conversations"] == []
    assert out[1]["conversations"] == [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    with pytest.raises(UsageError, match="row 2: a turn without 'from' or 'role'"):
        standardize_sharegpt(Dataset.from_list([rows[1], {"conversations": [{"value": "Q"}]}]))


ALPACA = ("Below are some instructions that describe some tasks. Write responses that appropriately complete each "
          "request.\n\n### Instruction:\n{INPUT}\n\n### Response:\n{OUTPUT}")
LLAMA3_TWICE = ("<|start_header_id|>system<|end_header_id|>\n\n{SYSTEM}<|eot_id|><|start_header_id|>user"
                "<|end_header_id|>\n\n{INPUT}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n{OUTPUT}"
                "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{INPUT}<|eot_id|><|start_header_id|>assistant"
                "<|end_header_id|>\n\n{OUTPUT}<|eot_id|>")
TALK = [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}, {"from": "human", "value": "Q2"},
        {"from": "gpt", "value": "A2"}]


def test_apply_chat_template_with_one_example_pair_renders_alpaca_turns():
    from datasets import Dataset

    from attnpick import apply_chat_template

    tok = tokenizer()
    out = apply_chat_template(Dataset.from_list([{"conversations": TALK}]), tokenizer=tok, chat_template=ALPACA)
    head = ALPACA.split("### Instruction")[0]
    assert out[0]["text"] == (f"{head}### Instruction:\nQ1\n\n### Response:\nA1[|endofturn|]### Instruction:\nQ2\n\n"
                              "### Response:\nA2[|endofturn|]")
    assert tok._ollama_modelfile.startswith("FROM {__FILE_LOCATION__}") and "TEMPLATE" in tok._ollama_modelfile
    prompt = tok.apply_chat_template([{"role": "user", "content": "Q"}], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("### Instruction:\nQ\n\n### Response:\n")


def test_apply_chat_template_with_two_example_pairs_uses_the_system_slot():
    from datasets import Dataset

    from attnpick import apply_chat_template

    tok = tokenizer()
    out = apply_chat_template(Dataset.from_list([{"conversations": TALK}]), tokenizer=tok, chat_template=LLAMA3_TWICE,
                              default_system_message="Be brief.")
    assert out[0]["text"] == ("<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>"
                              "user<|end_header_id|>\n\nQ1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
                              "A1<|eot_id|>[|endofturn|]<|start_header_id|>user<|end_header_id|>\n\nQ2<|eot_id|>"
                              "<|start_header_id|>assistant<|end_header_id|>\n\nA2<|eot_id|>[|endofturn|]")


@pytest.mark.parametrize("bad", ["no placeholders", "{OUTPUT} before {INPUT}", "{INPUT}{OUTPUT}{INPUT}{OUTPUT}"
                                 "{INPUT}{OUTPUT}", "{INPUT} a {OUTPUT} x {INPUT} b {OUTPUT} x"])
def test_apply_chat_template_refuses_templates_it_cannot_read_in_one_line(bad):
    from datasets import Dataset

    from attnpick import apply_chat_template

    with pytest.raises(UsageError, match="apply_chat_template"):
        apply_chat_template(Dataset.from_list([{"conversations": TALK}]), tokenizer=tokenizer(), chat_template=bad)


# --- the Ollama Modelfile -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [None, *sorted(GOLDEN)])
def test_the_modelfile_template_is_the_chat_templates_turns_checked_by_rendering(name):
    from attnpick.chat_templates import get_chat_template
    from attnpick.export import modelfile

    tok = tokenizer()
    if name:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            get_chat_template(tok, name)
    turns = modelfile.turns_of(tok)
    assert turns is not None and modelfile.checked(tok, turns)
    talk = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}, {"role": "user", "content": "z"}]
    assert turns.render(talk) == tok.apply_chat_template(talk, tokenize=False, add_generation_prompt=True)
    text = modelfile.modelfile(tok, "./m.gguf")
    assert text.startswith("FROM ./m.gguf\n") and 'TEMPLATE """' in text and "{{-" not in text
    assert 'PARAMETER stop "[|endofturn|]"' in text
    assert f'{{{{ .Content }}}}{turns.after_user}' in text  # the answer opener follows the user's text


def test_a_template_that_changes_with_the_turn_gets_no_ollama_template():
    from attnpick.export import modelfile

    tok = tokenizer()
    tok.chat_template = "{% for m in messages %}{{ loop.index }}:{{ m['content'] }}\n{% endfor %}"
    text = modelfile.modelfile(tok, "./m.gguf")
    assert "TEMPLATE" not in text.split("# No TEMPLATE")[0] and "# No TEMPLATE" in text


# --- TRL keywords ---------------------------------------------------------------------------------------------------

def _trl_classes():
    import trl

    from attnpick.compat import trl_keywords

    assert trl_keywords.install()
    return [(getattr(trl, t), getattr(trl, c)) for t, c, _ in trl_keywords.TRAINERS]


def test_orpo_is_importable_where_the_notebooks_import_it():
    _trl_classes()
    from trl import ORPOConfig, ORPOTrainer  # noqa: F401 - trl.experimental.orpo's, set on trl


def test_every_moved_keyword_is_a_field_of_that_trainers_config_and_a_modern_call_is_unchanged():
    from attnpick.compat.trl_keywords import trainer_keywords

    for trainer, config in _trl_classes():
        fields = {f.name for f in dataclasses.fields(config)}
        taken = set(inspect.signature(trainer.__init__).parameters)
        modern = {"model": object(), "args": config(output_dir="x", report_to="none"), "processing_class": object()}
        assert trainer_keywords(modern, config, trainer) == (modern, []), trainer.__name__
        old = {"beta": 0.2} if "beta" in fields else {"max_length": 64}
        out, notes = trainer_keywords({"tokenizer": "tok", **old}, config, trainer)
        assert out["processing_class"] == "tok" and "tokenizer" not in out
        name, value = next(iter(old.items()))
        assert name not in taken and getattr(out["args"], name) == value and notes


def test_a_trainer_keyword_that_disagrees_with_args_names_both_values():
    from trl import SFTConfig, SFTTrainer

    from attnpick.compat.trl_keywords import trainer_keywords

    _trl_classes()
    args = SFTConfig(output_dir="x", max_length=128, report_to="none")
    with pytest.raises(UsageError, match=r"max_seq_length=512.*args.max_length=128"):
        trainer_keywords({"args": args, "max_seq_length": 512}, SFTConfig, SFTTrainer)
    same = SFTConfig(output_dir="x", max_length=512, report_to="none")
    assert trainer_keywords({"args": same, "max_seq_length": 512}, SFTConfig, SFTTrainer)[0]["args"].max_length == 512


def test_removed_keywords_are_translated_or_dropped_with_the_reason():
    from transformers import TrainingArguments
    from trl import DPOConfig, DPOTrainer

    from attnpick.compat.trl_keywords import trainer_keywords

    _trl_classes()
    with pytest.warns(UserWarning, match=r"warmup_ratio=0.1 as warmup_steps=0.1"):
        config = DPOConfig(output_dir="x", warmup_ratio=0.1, report_to="none")
    assert config.warmup_steps == 0.1
    with pytest.warns(UserWarning, match=r"warmup_steps=3 was given too and wins"):
        assert TrainingArguments(output_dir="x", warmup_ratio=0.5, warmup_steps=3).warmup_steps == 3
    out, notes = trainer_keywords({"max_prompt_length": 512, "max_length": 1024}, DPOConfig, DPOTrainer)
    assert out["args"].max_length == 1024 and not hasattr(out["args"], "max_prompt_length")
    assert any("max_prompt_length=512 dropped" in n for n in notes)


# --- UnslothTrainer, embed_tokens / lm_head -------------------------------------------------------------------------

@trl_on_this_machine
def test_embed_tokens_and_lm_head_train_whole_with_their_own_learning_rate(tmp_path):
    from attnpick import FastLanguageModel, UnslothTrainer, UnslothTrainingArguments

    model, tok = _load(four_bit=True)
    with pytest.warns(UserWarning, match="embed_tokens, lm_head train as full modules"):
        model = FastLanguageModel.get_peft_model(model, r=8, target_modules=["q_proj", "v_proj", "embed_tokens",
                                                                             "lm_head"])
    saved = [n for n, p in model.named_parameters() if p.requires_grad and "modules_to_save" in n]
    assert saved == ["base_model.model.model.embed_tokens.modules_to_save.default.weight"]  # tied: one copy
    before = model.get_input_embeddings().modules_to_save.default.weight.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = UnslothTrainer(model=model, tokenizer=tok, train_dataset=_texts(), dataset_text_field="text",
                                 max_seq_length=64,
                                 args=UnslothTrainingArguments(output_dir=str(tmp_path), max_steps=2,
                                                               per_device_train_batch_size=2, learning_rate=5e-4,
                                                               embedding_learning_rate=1e-4, loraplus_lr_ratio=4.0,
                                                               weight_decay=0.01, report_to="none", save_strategy="no"))
    copy = model.get_input_embeddings().modules_to_save.default.weight
    assert copy.dtype == before.dtype  # kept in the model's dtype, not TRL's bfloat16
    optimizer = trainer.create_optimizer()
    rates = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            rates[id(p)] = group["lr"]
    assert rates[id(copy)] == pytest.approx(1e-4)
    names = dict(model.named_parameters())
    assert [rates[id(p)] for n, p in names.items() if ".lora_B." in n] == pytest.approx([2e-3] * 4)
    assert [rates[id(p)] for n, p in names.items() if ".lora_A." in n] == pytest.approx([5e-4] * 4)
    assert trainer.train().global_step == 2
    assert not copy.detach().equal(before)
    from attnpick.export.merged import merged_state_dict

    state = merged_state_dict(model, "float32")
    assert state["model.embed_tokens.weight"].equal(copy.detach().float())
    messages = [{"role": "user", "content": "안녕"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    FastLanguageModel.for_inference(model)
    assert model.generate(ids, max_new_tokens=2).shape[1] == ids["input_ids"].shape[1] + 2


@trl_on_this_machine
def test_embedding_learning_rate_without_trained_embeddings_is_one_clear_error(tmp_path):
    from attnpick import FastLanguageModel, UnslothTrainer, UnslothTrainingArguments

    model, tok = _load()
    model = FastLanguageModel.get_peft_model(model, r=8, target_modules=["q_proj", "v_proj"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = UnslothTrainer(model=model, processing_class=tok, train_dataset=_texts(),
                                 args=UnslothTrainingArguments(output_dir=str(tmp_path), max_steps=1,
                                                               embedding_learning_rate=1e-5, report_to="none"))
    with pytest.raises(UsageError, match="add 'embed_tokens' and 'lm_head'"):
        trainer.create_optimizer()
    with pytest.raises(UsageError, match="loraplus_lr_ratio"):
        UnslothTrainingArguments(output_dir=str(tmp_path), loraplus_lr_ratio=-1)


def test_generate_takes_a_batch_encoding_positional_or_named():
    from attnpick import FastLanguageModel

    model, tok = _load()
    FastLanguageModel.for_inference(model)
    encoding = tok.apply_chat_template([{"role": "user", "content": "서울"}], add_generation_prompt=True,
                                       return_tensors="pt")
    plain = model.generate(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"],
                           max_new_tokens=3, do_sample=False)
    assert model.generate(encoding, max_new_tokens=3, do_sample=False).equal(plain)
    assert model.generate(input_ids=encoding, max_new_tokens=3, do_sample=False).equal(plain)


# --- FastModel ------------------------------------------------------------------------------------------------------

def test_fast_models_switches_choose_the_lora_targets():
    from attnpick import FastModel

    def targets(**switches):
        model, _ = FastModel.from_pretrained("tiny-exaone", max_seq_length=128, load_in_4bit=False)
        peft = FastModel.get_peft_model(model, r=4, **switches)
        return set(peft.peft_config["default"].target_modules)

    attention, mlp = {"q_proj", "k_proj", "v_proj", "o_proj"}, {"gate_proj", "up_proj", "down_proj"}
    assert targets(finetune_vision_layers=False) == attention | mlp
    assert targets(finetune_mlp_modules=False) == attention
    assert targets(finetune_attention_modules=False) == mlp
    model, _ = FastModel.from_pretrained("tiny-exaone", max_seq_length=128, load_in_4bit=False)
    with pytest.raises(UsageError, match="finetune_language_layers=False"):
        FastModel.get_peft_model(model, finetune_language_layers=False)
    with pytest.raises(UsageError, match="both False"):
        FastModel.get_peft_model(model, finetune_attention_modules=False, finetune_mlp_modules=False)


def test_fast_model_refuses_a_vision_model_in_one_line(tmp_path):
    from attnpick import FastModel

    folder = tmp_path / "vlm"
    shutil.copytree(tiny.ensure(), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "vision_config": {"hidden_size": 8}}))
    with pytest.raises(UsageError, match="vision-language model.*text models only"):
        FastModel.from_pretrained(str(folder), load_in_4bit=False)


# --- plain text in attnpick train -----------------------------------------------------------------------------------

def test_plain_text_rows_are_learned_whole_and_end_in_the_eos_token(tmp_path):
    from attnpick.training.data import load_examples, validate

    data = tmp_path / "wiki.txt"
    data.write_text("서울은 대한민국의 수도이다.\n\n경복궁은 조선의 법궁이다.\n", encoding="utf-8")
    stats = validate(str(data))  # datasets' text reader: one row per line, the blank line an empty row
    assert stats.layouts == {"text": stats.rows} and stats.examples == 2
    assert stats.dropped.by_reason == ({"empty_text": 1} if stats.rows == 3 else {})
    tok = tokenizer()
    examples, stats = load_examples(str(data), tok, 256)
    for row in examples:
        assert row["labels"] == row["input_ids"] and row["input_ids"][-1] == tok.eos_token_id
    assert stats.answer_tokens == stats.tokens


def test_a_sharegpt_mapping_template_gets_the_same_ollama_template():
    from attnpick.chat_templates import get_chat_template
    from attnpick.export import modelfile

    plain = modelfile.modelfile(get_chat_template(tokenizer(), "phi-3"), "./m.gguf")
    mapped = modelfile.modelfile(get_chat_template(tokenizer(), "phi-3", mapping=SHAREGPT), "./m.gguf")
    assert mapped == plain and 'TEMPLATE """' in mapped
    saved = tokenizer()
    saved.chat_template = get_chat_template(tokenizer(), "phi-3", mapping=SHAREGPT).chat_template  # reloaded: no note
    assert modelfile.modelfile(saved, "./m.gguf") == plain


SHAREGPT = {"role": "from", "content": "value", "user": "human", "assistant": "gpt"}


@trl_on_this_machine
@pytest.mark.parametrize("kind", ["orpo", "kto"])
def test_orpo_and_kto_train_with_the_notebooks_keywords(kind, tmp_path):
    """DPO trains in examples/notebooks/dpo_zephyr.py; ORPO and KTO one step each here, called as their notebooks do."""
    from datasets import Dataset

    from attnpick import FastLanguageModel, PatchDPOTrainer, is_bfloat16_supported

    PatchDPOTrainer()
    import trl

    model, tok = _load()
    model = FastLanguageModel.get_peft_model(model, r=8, target_modules=["q_proj", "v_proj"])
    pairs = [("서울의 명소", "경복궁입니다.", "모르겠습니다."), ("2 + 2", "4입니다.", "5입니다.")] * 4
    common = dict(per_device_train_batch_size=2, max_steps=1, learning_rate=5e-6, warmup_ratio=0.1,
                  fp16=not is_bfloat16_supported(), bf16=is_bfloat16_supported(), logging_steps=1,
                  optim="adamw_torch", output_dir=str(tmp_path), report_to="none", beta=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "orpo":
            data = Dataset.from_list([{"prompt": p, "chosen": c, "rejected": r} for p, c, r in pairs])
            trainer = trl.ORPOTrainer(model=model, train_dataset=data, tokenizer=tok,
                                      args=trl.ORPOConfig(max_length=64, max_prompt_length=32, **common))
        else:
            data = Dataset.from_list([{"prompt": p, "completion": a, "label": good}
                                      for p, c, r in pairs for a, good in ((c, True), (r, False))])
            trainer = trl.KTOTrainer(model=model, ref_model=None, train_dataset=data, tokenizer=tok,
                                     args=trl.KTOConfig(max_length=64, **common))
    assert trainer.train().global_step == 1
