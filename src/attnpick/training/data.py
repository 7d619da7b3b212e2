"""Training data: JSONL in three layouts, rendered with the model's chat template, loss on answers only.

Layouts, detected per line: chat `{"messages": [{"role", "content"}, ...]}`, KoAlpaca-style
`{"instruction", "input", "output"}`, and `{"prompt", "completion"}`. EXAONE's template has no generation
markers, so the answer spans are found by rendering: the text of the conversation up to an assistant turn
(with the generation prompt) is a prefix of the text with that turn, and the characters in between are the
answer, `[|endofturn|]` included so that the model learns to stop. Tokens whose characters fall in an
answer span get labels; every other token gets -100.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from attnpick.errors import UsageError

DEFAULT = "embedded"  # the default dataset shipped with attnpick (data/default_sft.jsonl)


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]


@dataclass(frozen=True)
class DataStats:
    dataset: str
    examples: int
    truncated: int
    tokens: int
    answer_tokens: int
    layouts: dict[str, int] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "examples": self.examples, "truncated": self.truncated, "tokens": self.tokens,
                "answer_tokens": self.answer_tokens, "layouts": dict(self.layouts), "lengths": dict(self.lengths)}


def read_rows(path: str) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
    """(dataset name, [(line number, object)]); a malformed line is a `UsageError` naming file and line."""
    if path == DEFAULT:
        text = resources.files("attnpick").joinpath("data/default_sft.jsonl").read_text(encoding="utf-8")
        dataset = "embedded default dataset (attnpick/data/default_sft.jsonl)"
    else:
        file = Path(path)
        if not file.is_file():
            raise UsageError(f"Data file {path!r} does not exist. Pass a JSONL file with --data.")
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"Data file {path!r} is not UTF-8 text. Save it as UTF-8 JSONL.") from None
        dataset = path
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise UsageError(f"{dataset}:{number}: not valid JSON ({exc.args[0] if exc.args else exc}). "
                             "Fix or remove the line.") from None
        if not isinstance(row, dict):
            raise UsageError(f"{dataset}:{number}: expected a JSON object per line, got {type(row).__name__}.")
        rows.append((number, row))
    if not rows:
        raise UsageError(f"{dataset}: the dataset is empty. Give at least one example per line.")
    return dataset, rows


def to_messages(row: dict[str, Any], where: str) -> tuple[str, list[dict[str, str]]]:
    """(layout, chat messages) for one row."""
    if "messages" in row:
        messages = row["messages"]
        ok = isinstance(messages, list) and messages and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages)
        if not ok:
            raise UsageError(f"{where}: 'messages' must be a list of {{\"role\", \"content\"}} objects.")
        if not any(m["role"] == "assistant" for m in messages):
            raise UsageError(f"{where}: the conversation has no assistant turn to learn from.")
        return "messages", [{"role": m["role"], "content": m["content"]} for m in messages]
    if "instruction" in row and "output" in row:
        prompt = str(row["instruction"])
        if row.get("input"):
            prompt += "\n\n" + str(row["input"])
        answer = str(row["output"])
        return "instruction", [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    if "prompt" in row and "completion" in row:
        return "prompt", [{"role": "user", "content": str(row["prompt"])},
                          {"role": "assistant", "content": str(row["completion"])}]
    raise UsageError(f"{where}: unknown layout with keys {sorted(row)}. Use {{\"messages\": [...]}}, "
                     "{\"instruction\", \"input\", \"output\"} or {\"prompt\", \"completion\"}.")


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


def tokenize(messages: list[dict[str, str]], tokenizer: Any, max_length: int) -> tuple[Example, bool]:
    text, spans = answer_spans(messages, tokenizer)
    # verbose=False: the full length is wanted (truncation is counted below), not a warning about it
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = [tid if any(a <= start < b for a, b in spans) else -100
              for tid, (start, _) in zip(ids, offsets, strict=True)]
    truncated = len(ids) > max_length
    return Example(ids[:max_length], labels[:max_length]), truncated


def load_examples(path: str, tokenizer: Any, max_length: int) -> tuple[list[Example], DataStats]:
    """Every example of the file, tokenized and truncated to `max_length` (truncations are counted)."""
    dataset, rows = read_rows(path)
    examples, layouts, truncated = [], {}, 0
    for number, row in rows:
        layout, messages = to_messages(row, f"{dataset}:{number}")
        layouts[layout] = layouts.get(layout, 0) + 1
        example, cut = tokenize(messages, tokenizer, max_length)
        truncated += cut
        if any(label != -100 for label in example.labels):
            examples.append(example)
    if not examples:
        raise UsageError(f"{dataset}: no example keeps an answer token within {max_length} tokens.")
    lengths = sorted(len(e.input_ids) for e in examples)
    stats = DataStats(dataset, len(examples), truncated, sum(lengths),
                      sum(sum(1 for x in e.labels if x != -100) for e in examples), layouts,
                      {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]})
    return examples, stats


def validate(path: str) -> DataStats:
    """Check a data file's JSON and layouts without a tokenizer (fast, before any model is loaded)."""
    dataset, rows = read_rows(path)
    layouts: dict[str, int] = {}
    for number, row in rows:
        layout, _ = to_messages(row, f"{dataset}:{number}")
        layouts[layout] = layouts.get(layout, 0) + 1
    return DataStats(dataset, len(rows), 0, 0, 0, layouts)
