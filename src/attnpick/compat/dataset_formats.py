"""Unsloth's dataset helpers on `datasets`: `standardize_sharegpt` / `standardize_data_formats` (ShareGPT turns as
role/content), `to_sharegpt` (Alpaca-like columns merged into one conversation per row) and the dataset-level
`apply_chat_template` (a custom prompt with `{SYSTEM}`, `{INPUT}` and `{OUTPUT}` as the tokenizer's chat template,
and every conversation rendered with it into `text`).

`from attnpick import to_sharegpt, standardize_sharegpt, apply_chat_template` as Unsloth's Ollama notebook writes
`from unsloth import ...`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from attnpick.compat.chat_templates import ChatFormat, build_template
from attnpick.errors import UsageError
from attnpick.training.layouts import SHAREGPT_ROLES
from attnpick.training.sources import mapped

CONVERSATION_KEYS = ("conversations", "messages")


def _turn_keys(turn: dict[str, Any]) -> tuple[str, str] | None:
    """(role key, text key) of one turn: ShareGPT's from/value or role/content, whichever it holds."""
    for role, text in (("from", "value"), ("role", "content")):
        if turn.get(role) is not None:
            return role, text
    return None


def standardize_sharegpt(dataset: Any, aliases_for_system: Sequence[str] = ("system",),
                         aliases_for_user: Sequence[str] = ("user", "human", "input"),
                         aliases_for_assistant: Sequence[str] = ("gpt", "assistant", "output"), **ignored: Any) -> Any:
    """A ShareGPT dataset (`conversations` of `from`/`value` turns) as `role`/`content` turns, as Unsloth's
    `standardize_sharegpt`. Each turn's keys are read from the turn itself (an empty first conversation decides
    nothing); role names go through attnpick's one role mapping (`training.layouts.SHAREGPT_ROLES`) plus the
    aliases given. A turn with no role is a `UsageError` naming its row; any other dataset is returned as it is."""
    roles = {**SHAREGPT_ROLES, **{a: "system" for a in aliases_for_system}, **{a: "user" for a in aliases_for_user},
             **{a: "assistant" for a in aliases_for_assistant}}
    columns = list(dataset.column_names)
    key = next((k for k in CONVERSATION_KEYS if k in columns), None)
    if key is None:
        return dataset

    def convert(row: dict[str, Any], index: int) -> dict[str, Any]:
        turns = []
        for turn in row[key] or []:
            keys = _turn_keys(turn) if isinstance(turn, dict) else None
            if keys is None:
                raise UsageError(f"standardize_sharegpt: row {index + 1}: a turn without 'from' or 'role' "
                                 f"({str(turn)[:80]}). Fix that row, or filter it out first.")
            role = turn[keys[0]]
            turns.append({"role": roles.get(str(role).lower(), role), "content": turn.get(keys[1])})
        return {"conversations": turns}

    return mapped(dataset, convert, "standardizing conversations", with_indices=True,
                  remove_columns=[key] if key != "conversations" else None)


def standardize_data_formats(dataset: Any, tokenizer: Any = None, aliases_for_system: Sequence[str] = ("system",),
                             aliases_for_user: Sequence[str] = ("user", "human", "input"),
                             aliases_for_assistant: Sequence[str] = ("gpt", "assistant", "output"),
                             **ignored: Any) -> Any:
    """Unsloth's `standardize_data_formats`: ShareGPT-style `conversations` as `role`/`content` turns; other layouts
    unchanged."""
    return standardize_sharegpt(dataset, aliases_for_system, aliases_for_user, aliases_for_assistant)


_COLUMN = re.compile(r"(?<!\{)\{([^{}]+)\}(?!\})")


def _prompt_pieces(merged_prompt: str, columns: list[str]) -> list[tuple[bool, str, list[str]]]:
    """`merged_prompt` as (optional, text, its columns) pieces: `[[...]]` blocks are optional."""
    pieces = []
    for part in re.split(r"(\[\[.+?\]\])", merged_prompt, flags=re.DOTALL):
        if not part:
            continue
        optional = part.startswith("[[") and part.endswith("]]")
        text = part[2:-2] if optional else part
        names = _COLUMN.findall(text)
        if optional and not names:
            raise UsageError(f"to_sharegpt: the optional block {part!r} names no column; write one as {{column}}.")
        missing = [n for n in names if n not in columns]
        if missing:
            raise UsageError(f"to_sharegpt: merged_prompt names {', '.join(missing)}, which the dataset does not "
                             f"have; its columns are {', '.join(columns)}.")
        pieces.append((optional, text, names))
    return pieces


def to_sharegpt(dataset: Any, merged_prompt: str = "", merged_column_name: str = "instruction",
                output_column_name: str = "output", remove_unused_columns: bool = True,
                conversation_extension: int = 1, random_state: int = 3407) -> Any:
    """Unsloth's `to_sharegpt`: each row as a ShareGPT conversation (`human` turn, `gpt` turn) in `conversations`.

    Args:
        merged_prompt: the human turn made from several columns, `{column}` for a column's text and `[[...]]` around
            a part written only where its first column is not empty, e.g.
            `"{instruction}[[\\nYour input is:\\n{input}]]"`. Empty: the column `merged_column_name` as it is.
        merged_column_name: the human turn's column (the merged one's name when `merged_prompt` is given).
        output_column_name: the gpt turn's column.
        remove_unused_columns: keep only `conversations`.
        conversation_extension: each conversation followed by this many minus one others drawn at random (seeded by
            `random_state`), so the model sees multi-turn chats.
    """
    columns = list(dataset.column_names)
    if "conversations" in columns and isinstance(dataset[0]["conversations"], list):
        raise UsageError("to_sharegpt: the dataset already has ShareGPT 'conversations'; use standardize_sharegpt.")
    if isinstance(conversation_extension, bool) or not isinstance(conversation_extension, int) or \
            conversation_extension < 1:
        raise UsageError(f"to_sharegpt(conversation_extension={conversation_extension!r}): give a whole number >= 1.")
    if output_column_name not in columns:
        raise UsageError(f"to_sharegpt: output_column_name {output_column_name!r} is not a column; the dataset has "
                         f"{', '.join(columns)}.")
    pieces = _prompt_pieces(merged_prompt, columns) if merged_prompt else None
    if pieces is None and merged_column_name not in columns:
        raise UsageError(f"to_sharegpt: no column {merged_column_name!r} to take the human turn from (columns: "
                         f"{', '.join(columns)}). Name it with merged_column_name=, or build it with merged_prompt=.")

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    def human(row: dict[str, Any]) -> str:
        if pieces is None:
            return text(row[merged_column_name])
        out = []
        for optional, piece, names in pieces:
            if optional and not text(row[names[0]]):
                continue
            out.append(_COLUMN.sub(lambda m: text(row[m.group(1)]), piece).replace("{{", "{").replace("}}", "}"))
        return "".join(out)

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        return {"conversations": [{"from": "human", "value": human(row)},
                                  {"from": "gpt", "value": text(row[output_column_name])}]}

    out = mapped(dataset, convert, "converting to ShareGPT",
                 remove_columns=columns if remove_unused_columns else None)
    if conversation_extension == 1:
        return out
    convos = out["conversations"]
    orders = []
    for j in range(1, conversation_extension):
        order = list(range(len(convos)))
        random.Random(random_state + j).shuffle(order)
        orders.append(order)

    def extend(row: dict[str, Any], index: int) -> dict[str, Any]:
        return {"conversations": row["conversations"] + [t for order in orders for t in convos[order[index]]]}

    return mapped(out, extend, "extending conversations", with_indices=True)


PLACEHOLDERS = ("{SYSTEM}", "{INPUT}", "{OUTPUT}")
DEFAULT_SYSTEM = ("Below are some instructions that describe some tasks. Write responses that appropriately "
                  "complete each request.")


def custom_format(chat_template: str, eos: str, default_system_message: str | None = DEFAULT_SYSTEM) -> ChatFormat:
    """A prompt written with `{SYSTEM}` (optional), `{INPUT}` and `{OUTPUT}` as a `ChatFormat`.

    With two `{INPUT}`/`{OUTPUT}` pairs (Unsloth's rule) the text between the pairs says how a later turn opens;
    with one, a later turn opens as the text before `{INPUT}` does from its last blank line on (Alpaca's
    `### Instruction:`). The answer ends in the eos token where the template does not end it so.
    """
    if not isinstance(chat_template, str):
        raise UsageError("apply_chat_template: chat_template must be text with {INPUT} and {OUTPUT} in it.")
    pairs = chat_template.count("{INPUT}")
    if pairs not in (1, 2) or chat_template.count("{OUTPUT}") != pairs or chat_template.count("{SYSTEM}") > 1:
        raise UsageError("apply_chat_template: chat_template needs {INPUT} and {OUTPUT} once or twice each (and "
                         "{SYSTEM} at most once), e.g. '### Instruction:\\n{INPUT}\\n\\n### Response:\\n{OUTPUT}'.")
    first_in, first_out = chat_template.index("{INPUT}"), chat_template.index("{OUTPUT}")
    if first_out < first_in or ("{SYSTEM}" in chat_template and chat_template.index("{SYSTEM}") > first_in):
        raise UsageError("apply_chat_template: chat_template must put {SYSTEM} (if any) before {INPUT}, and {INPUT} "
                         "before {OUTPUT}.")
    head, opener = chat_template[:first_in], chat_template[first_in + 7:first_out]
    if pairs == 2:
        second_in = chat_template.index("{INPUT}", first_out)
        second_out = chat_template.index("{OUTPUT}", second_in)
        close, between = chat_template[second_out + 8:], chat_template[first_out + 8:second_in]
        if chat_template[second_in + 7:second_out] != opener or not between.startswith(close) or \
                not head.endswith(between[len(close):]):
            raise UsageError("apply_chat_template: the two {INPUT}/{OUTPUT} examples in chat_template differ; write "
                             "the second exactly as the first.")
        user_open = between[len(close):]
    else:
        close = chat_template[first_out + 8:]
        user_open = head.rsplit("\n\n", 1)[1] if "\n\n" in head.rstrip("\n") else head
        user_open = "" if "{SYSTEM}" in user_open else user_open
    preamble = head[:len(head) - len(user_open)] if user_open else head
    if eos and not close.rstrip().endswith(eos):
        close += eos
    if "{SYSTEM}" in preamble:
        before, after = preamble.split("{SYSTEM}")
        return ChatFormat("custom", (user_open, ""), (opener, close), (before, after),
                          default_system=default_system_message or "", system="always")
    return ChatFormat("custom", (user_open, ""), (opener, close), ("", "\n\n"), bos=preamble)


def apply_chat_template(dataset: Any, tokenizer: Any = None, chat_template: str | None = None,
                        default_system_message: str | None = DEFAULT_SYSTEM, extra_eos_tokens: Any = None,
                        **ignored: Any) -> Any:
    """Unsloth's dataset-level `apply_chat_template`: `chat_template` (a prompt with `{SYSTEM}`, `{INPUT}`,
    `{OUTPUT}`) becomes the tokenizer's Jinja chat template, and each row's `conversations` (role/content, or
    ShareGPT from/value) is rendered into a `text` column. The Ollama Modelfile for it is
    `tokenizer._ollama_modelfile` (`FROM {__FILE_LOCATION__}` until a GGUF file is written)."""
    from attnpick.export import modelfile

    if tokenizer is None:
        raise UsageError("apply_chat_template needs tokenizer=: the one from_pretrained returned.")
    if chat_template is None:
        raise UsageError("apply_chat_template needs chat_template=: a prompt with {INPUT} and {OUTPUT}.")
    if "conversations" not in dataset.column_names:
        raise UsageError("apply_chat_template: the dataset has no 'conversations' column; build it with to_sharegpt "
                         "(and standardize_sharegpt).")
    fmt = custom_format(chat_template, tokenizer.eos_token or "", default_system_message)
    tokenizer.chat_template = build_template(fmt, tokenizer.eos_token or "")
    tokenizer._attnpick_chat_format = fmt
    tokenizer._ollama_modelfile = modelfile.modelfile(tokenizer, "{__FILE_LOCATION__}")
    dataset = standardize_sharegpt(dataset)

    def render(row: dict[str, Any]) -> dict[str, Any]:
        return {"text": tokenizer.apply_chat_template(row["conversations"], tokenize=False)}

    return mapped(dataset, render, "applying the chat template")
