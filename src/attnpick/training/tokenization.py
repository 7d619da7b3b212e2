"""Chat messages into tokens with labels on the answers only.

EXAONE's template has no generation markers, so the answer spans are found by rendering: the conversation up to an
assistant turn (with the generation prompt) is a prefix of the conversation with that turn, and the characters in
between are the answer, `[|endofturn|]` included so that the model learns to stop. Tokens whose characters fall in
an answer span get labels; every other token gets -100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from attnpick.errors import UsageError

TRUNCATE = ("right", "left")


ENCODING_VERSION = 3  # part of the cache fingerprint of tokenized data: bump when `encode` changes its output


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]


def answer_spans(messages: list[dict[str, str]], tokenizer: Any) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True) if i else ""
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not text.startswith(upto) or not upto.startswith(before):
            raise UsageError("The model's chat template does not render a conversation as a prefix of its "
                             "continuation; attnpick cannot find the answer tokens.")
        spans.append((len(before), len(upto)))
    return text, spans


def tokenize(messages: list[dict[str, str]], tokenizer: Any, max_length: int,
             truncate: str = "right") -> dict[str, Any]:
    """input_ids and labels cut to `max_length` (right: the end goes; left: the start of the conversation goes,
    the last answer stays), whether it was cut, whether an answer lost its end-of-turn token, or a drop code."""
    text, spans = answer_spans(messages, tokenizer)
    # verbose=False: the full length is wanted (truncation is counted here), not a warning about it
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = [tid if any(a <= start < b for a, b in spans) else -100 for tid, (start, _) in zip(ids, offsets,
                                                                                                strict=True)]
    cut = len(ids) > max_length
    if truncate == "left" and cut:
        ids, labels = ids[-max_length:], labels[-max_length:]
        if all(label != -100 for label in labels):
            return {"drop": "answer_fills_max_seq_length"}
    else:
        ids, labels = ids[:max_length], labels[:max_length]
    if all(label == -100 for label in labels):
        return {"drop": "prompt_fills_max_seq_length"}
    lost_eot = cut and truncate == "right" and labels[-1] != -100 and not _ends_turn(labels, tokenizer.eos_token_id)
    return {"drop": "", "input_ids": ids, "labels": labels, "truncated": cut, "lost_eot": lost_eot}


def tokenize_text(text: str, tokenizer: Any, max_length: int, truncate: str = "right") -> dict[str, Any]:
    """Plain text (continued pretraining) as tokens that are all learned: the tokenizer's own special tokens (BOS
    where it adds one), then the eos token unless the text already ends in it, so that packed documents are
    separated; cut to `max_length` as `tokenize` cuts."""
    ids = list(tokenizer(text, verbose=False)["input_ids"])
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    cut = len(ids) > max_length
    ids = ids[-max_length:] if truncate == "left" and cut else ids[:max_length]
    return {"drop": "", "input_ids": ids, "labels": list(ids), "truncated": cut, "lost_eot": False}


def _ends_turn(labels: list[int], eot: int | None) -> bool:
    """Whether the answer the sequence ends in still holds its end-of-turn token."""
    tail = []
    for label in reversed(labels):
        if label == -100:
            break
        tail.append(label)
    return eot is not None and eot in tail


def examples_of(dataset: Any, count: int) -> list[Example]:
    """The first `count` rows of a tokenized dataset as `Example`s."""
    rows = dataset.select(range(min(count, len(dataset))))
    return [Example(list(ids), list(labels)) for ids, labels in zip(rows["input_ids"], rows["labels"], strict=True)]
