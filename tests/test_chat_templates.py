"""attnpick.chat_templates, the import Unsloth's notebooks write (defined in attnpick.compat.chat_templates): Unsloth's
names (get_chat_template, standardize_sharegpt, standardize_data_formats, train_on_responses_only) on attnpick's code,
tested by rendering and by exact labels."""

from __future__ import annotations

import warnings

import pytest

from attnpick.chat_templates import (
    get_chat_template,
    standardize_data_formats,
    standardize_sharegpt,
    train_on_responses_only,
)
from attnpick.compat.chat_templates import CHAT_FORMATS, response_labels, response_markers
from attnpick.errors import UsageError
from attnpick.model import tiny
from tests.helpers import tiny_model

CHAT = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
SHAREGPT = {"role": "from", "content": "value", "user": "human", "assistant": "gpt"}


def tokenizer():
    """tiny-exaone's tokenizer from the folder attnpick loads (the Llama copy: transformers 5.17 would ask for the
    EXAONE folder's remote code), with EXAONE's own chat template."""
    from transformers import AutoTokenizer

    from attnpick.model import exaone

    return AutoTokenizer.from_pretrained(exaone.converted_folder(tiny.ensure()), trust_remote_code=False)


def rendered(tok, chat, **kwargs):
    return tok.apply_chat_template(chat, tokenize=False, **kwargs)


# Each family's published format, rendered for one system + user + assistant exchange (EXAONE's eos stands in where
# a format ends turns with the tokenizer's own eos token).
GOLDEN = {
    "chatml": "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n",
    "llama-3.1": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user"
                 "<|end_header_id|>\n\nQ<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>",
    "mistral": "<s>[INST] S\n\nQ [/INST]A[|endofturn|]",
    "gemma-3": "<bos><start_of_turn>user\nS\n\nQ<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n",
    "phi-3": "<|system|>\nS<|end|>\n<|user|>\nQ<|end|>\n<|assistant|>\nA<|end|>\n",
    "phi-4": "<|im_start|>system<|im_sep|>S<|im_end|><|im_start|>user<|im_sep|>Q<|im_end|><|im_start|>assistant"
             "<|im_sep|>A<|im_end|>",
    "zephyr": "<|system|>\nS[|endofturn|]\n<|user|>\nQ[|endofturn|]\n<|assistant|>\nA[|endofturn|]\n",
    "vicuna": "S USER: Q ASSISTANT: A[|endofturn|]",
    "alpaca": "S\n\n### Instruction:\nQ\n\n### Response:\nA[|endofturn|]\n\n",
    "exaone": "[|system|]S[|endofturn|]\n[|user|]Q\n[|assistant|]A[|endofturn|]\n",
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_each_format_renders_its_published_layout(name):
    tok = tokenizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # most formats' tokens are not in EXAONE's vocabulary
        get_chat_template(tok, name)
    assert rendered(tok, CHAT) == GOLDEN[name]


def test_the_exaone_format_is_exaones_own_template():
    own, ours = tokenizer(), get_chat_template(tokenizer(), "exaone")
    chats = [CHAT, CHAT[1:], [*CHAT[1:], {"role": "user", "content": "Q2"}]]
    for chat in chats:
        for prompt in (False, True):
            assert rendered(ours, chat, add_generation_prompt=prompt) == rendered(own, chat,
                                                                                   add_generation_prompt=prompt)


def test_qwen_and_vicuna_bring_their_default_system_message():
    tok = get_chat_template(tokenizer(), "qwen-2.5")
    assert rendered(tok, CHAT[1:]).startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
    tok = get_chat_template(tokenizer(), "chatml", system_message="너는 친절한 조수야.")
    assert rendered(tok, CHAT[1:]).startswith("<|im_start|>system\n너는 친절한 조수야.<|im_end|>")


@pytest.mark.parametrize("name", sorted(CHAT_FORMATS))
def test_a_sharegpt_mapping_renders_like_role_and_content(name):
    plain, mapped = tokenizer(), tokenizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        get_chat_template(plain, name)
        get_chat_template(mapped, name, mapping=SHAREGPT)
    sharegpt = [{"from": {"user": "human", "assistant": "gpt"}.get(m["role"], m["role"]), "value": m["content"]}
                for m in CHAT]
    assert rendered(mapped, sharegpt) == rendered(plain, CHAT)
    assert rendered(mapped, sharegpt[:2], add_generation_prompt=True) == rendered(plain, CHAT[:2],
                                                                                    add_generation_prompt=True)


def test_a_template_whose_tokens_the_vocabulary_lacks_warns_and_names_the_models_own():
    tok = tokenizer()
    with pytest.warns(UserWarning, match=r"<\|eot_id\|>.*not in this tokenizer's vocabulary.*chat_template='exaone'"):
        get_chat_template(tok, "llama-3.1")
    assert tok.eos_token == "[|endofturn|]"  # map_eos_token: <|eot_id|> is not in the vocabulary, eos stays
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_chat_template(tokenizer(), "exaone")  # EXAONE's own tokens: no warning


def test_map_eos_token_makes_the_end_of_turn_the_eos_where_the_vocabulary_has_it():
    tok = tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    get_chat_template(tok, "chatml")
    assert tok.eos_token == "<|im_end|>"
    kept = tokenizer()
    kept.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    get_chat_template(kept, "chatml", map_eos_token=False)
    assert kept.eos_token == "[|endofturn|]"


@pytest.mark.parametrize("bad", ["llama-9", ("only one",), 42])
def test_unknown_or_malformed_templates_are_one_clear_error(bad):
    with pytest.raises(UsageError, match="chat_template"):
        get_chat_template(tokenizer(), bad)


def test_standardize_sharegpt_maps_roles_through_attnpicks_layouts():
    from datasets import Dataset

    data = Dataset.from_list([{"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"},
                                                 {"from": "gpt", "value": "A"}]}])
    out = standardize_sharegpt(data)
    assert out[0]["conversations"] == CHAT
    assert standardize_data_formats(data)[0]["conversations"] == CHAT
    alpaca = Dataset.from_list([{"instruction": "Q", "output": "A"}])
    assert standardize_data_formats(alpaca) is alpaca  # other layouts as they are


def test_response_labels_keep_answers_only():
    ids = [1, 7, 50, 51, 8, 60, 61, 9, 7, 52, 8, 62, 9]  # 7 = user marker, 8 = assistant marker, 9 = end of turn
    assert response_labels(ids, [7], [8]) == [-100] * 5 + [60, 61, 9] + [-100] * 3 + [62, 9]
    assert response_labels([1, 2, 3], [7], [8]) == [-100] * 3  # no answer: nothing to learn


def test_markers_are_inferred_for_exaones_own_template_and_for_get_chat_template():
    assert response_markers(tokenizer()) == ("[|user|]", "[|assistant|]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = get_chat_template(tokenizer(), "llama-3")
    assert response_markers(tok) == ("<|start_header_id|>user<|end_header_id|>\n\n",
                                     "<|start_header_id|>assistant<|end_header_id|>\n\n")


def _sft_trainer(tmp_path, texts):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = tiny_model("sdpa")
    args = SFTConfig(output_dir=str(tmp_path), max_length=256, bf16=False, fp16=False, report_to=[],
                     dataset_text_field="text", per_device_train_batch_size=2, use_cpu=True)
    return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list([{"text": t} for t in texts]),
                      processing_class=tok), tok


def test_train_on_responses_only_labels_exactly_the_answers_and_prompts_add_nothing_to_the_loss(tmp_path):
    import torch

    tok = tokenizer()
    chats = [[{"role": "user", "content": "서울은 어떤 곳인가요?"},
              {"role": "assistant", "content": "대한민국의 수도입니다."}],
             [{"role": "system", "content": "짧게 답해."}, {"role": "user", "content": "1+1?"},
              {"role": "assistant", "content": "2"}, {"role": "user", "content": "2+2?"},
              {"role": "assistant", "content": "4"}]]
    texts = [rendered(tok, chat) for chat in chats]
    trainer, tok = _sft_trainer(tmp_path, texts)
    train_on_responses_only(trainer)
    user, assistant = (tok.convert_tokens_to_ids(t) for t in ("[|user|]", "[|assistant|]"))
    for row in trainer.train_dataset:
        ids, labels = row["input_ids"], row["labels"]
        inside, expected = False, []
        for token in ids:
            if token == assistant:
                inside = True
                expected.append(-100)
                continue
            if token == user:
                inside = False
            expected.append(token if inside else -100)
        assert labels == expected
        kept = tok.decode([t for t in labels if t != -100])
        assert "서울" not in kept and "1+1" not in kept and "[|endofturn|]" in kept
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    model = trainer.model.eval()
    with torch.no_grad():
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=batch["labels"]).loss
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    shift = batch["labels"][:, 1:]
    keep = shift != -100
    manual = torch.nn.functional.cross_entropy(logits[:, :-1][keep], shift[keep])
    torch.testing.assert_close(loss, manual)  # only answer positions count


def test_train_on_responses_only_labels_data_the_collator_tokenizes_later(tmp_path):
    trainer, tok = _sft_trainer(tmp_path, ["[|user|]Q\n[|assistant|]A[|endofturn|]\n"])
    train_on_responses_only(trainer)
    feature = {"input_ids": tok("[|user|]Q2\n[|assistant|]B[|endofturn|]\n", add_special_tokens=False)["input_ids"]}
    labels = trainer.data_collator([feature])["labels"][0].tolist()
    assert tok.decode([t for t in labels if t != -100]) == "B[|endofturn|]\n"


def test_standardize_sharegpt_streams_too():
    from datasets import Dataset

    rows = [{"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}]
    streamed = standardize_sharegpt(Dataset.from_list(rows).to_iterable_dataset())
    assert next(iter(streamed))["conversations"] == CHAT[1:]
