"""The layouts Korean instruction data comes in, read into chat messages: chat `messages` (role/content), ShareGPT
`conversations` (from/value: human, gpt, system), Alpaca/KoAlpaca `instruction`/`input`/`output`, and
`prompt`/`completion`; `--columns` maps other names onto these. A row that cannot be trained on gives the code of
why (`DROP_REASONS`), never an exception.
"""

from __future__ import annotations

from typing import Any

from attnpick.errors import UsageError

# Canonical column names a layout reads; `--columns name=theirs` maps a dataset's own names onto them.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "conversations": ("conversations",),
    "instruction": ("instruction", "output"),
    "prompt": ("prompt", "completion"),
    "text": ("text",),  # plain text (continued pretraining): every token is learned, no chat template is used
}


CANONICAL = ("messages", "conversations", "instruction", "input", "output", "prompt", "completion", "system")


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


CHAT_ROLES = frozenset({"system", "user", "assistant"})


DROP_REASONS = {
    "null_field": "a required field is null",
    "not_text": "a field that must be text is not",
    "empty_answer": "the answer is empty",
    "unknown_role": "a turn's role is not system, user or assistant (human, gpt)",
    "bad_turns": "the turns are not a list of role/content objects",
    "no_answer": "no assistant turn to learn from",
    "empty_text": "the text is empty",
    "text_row": "a plain-text row (continued pretraining) has no chat turns",
    "prompt_fills_max_seq_length": "the prompt fills max_seq_length, so no answer token is left",
    "answer_fills_max_seq_length": "the answer alone fills max_seq_length (--truncate left keeps no prompt)",
}


# What keeps the rows of each drop reason, for the warnings.
DROP_FIXES = {
    "prompt_fills_max_seq_length": "a longer --max-seq-length (or --truncate left) keeps them",
    "answer_fills_max_seq_length": "a longer --max-seq-length keeps them",
}
MALFORMED_FIX = "fix those rows in the data (--strict-data stops at the first one, with its row number)"

# Drops about the row itself (malformed data), as opposed to its length: --strict-data makes these an error.
MALFORMED = frozenset({"null_field", "not_text", "empty_answer", "unknown_role", "bad_turns", "no_answer",
                       "empty_text"})


def parse_columns(text: str | dict[str, str] | None) -> dict[str, str]:
    """`instruction=질문,output=답변` -> {"instruction": "질문", "output": "답변"} (canonical name -> your column)."""
    if not text:
        return {}
    if isinstance(text, dict):
        pairs = list(text.items())
    else:
        pairs = []
        for item in text.split(","):
            name, eq, theirs = item.partition("=")
            if not eq or not name.strip() or not theirs.strip():
                raise UsageError(f"--columns {text!r}: write NAME=COLUMN pairs separated by commas, e.g. "
                                 "--columns instruction=질문,output=답변.")
            pairs.append((name.strip(), theirs.strip()))
    names = [name for name, _ in pairs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(f"--columns names {', '.join(twice)} more than once: map each name onto one column.")
    theirs_all = [theirs for _, theirs in pairs]
    shared = sorted({theirs for theirs in theirs_all if theirs_all.count(theirs) > 1})
    if shared:
        both = [name for name, theirs in pairs if theirs == shared[0]]
        raise UsageError(f"--columns maps {' and '.join(both)} to the same column {shared[0]!r}: one column feeds one "
                         "name.")
    unknown = [name for name, _ in pairs if name not in CANONICAL]
    if unknown:
        raise UsageError(f"--columns: {', '.join(unknown)} is not a column attnpick reads. Map onto: "
                         f"{', '.join(CANONICAL)}.")
    return dict(pairs)


def rename_columns(dataset: Any, columns: dict[str, str], description: str) -> Any:
    missing = [theirs for theirs in columns.values() if theirs not in dataset.column_names]
    if missing:
        raise UsageError(f"{description}: --columns names {', '.join(missing)}, which the data does not have. Its "
                         f"columns: {', '.join(dataset.column_names)}.")
    clashing = [name for name, theirs in columns.items() if name in dataset.column_names and name != theirs]
    if clashing:
        dataset = dataset.remove_columns(clashing)
    return dataset.rename_columns({theirs: name for name, theirs in columns.items() if theirs != name})


def detect_layouts(names: list[str], description: str) -> tuple[str, ...]:
    """The layouts whose columns the data has, in order of preference. A file may mix layouts (JSON rows with
    different keys become one table whose missing fields are null): each row then uses the first layout its
    non-null fields fill."""
    found = tuple(layout for layout, needed in LAYOUTS.items() if all(n in names for n in needed))
    if found:
        return found
    raise UsageError(
        f"{description}: unknown layout with columns {', '.join(sorted(names))}. attnpick reads chat 'messages', "
        "ShareGPT 'conversations', 'instruction'/'input'/'output', 'prompt'/'completion' or plain 'text' (continued "
        "pretraining); map yours with --columns, e.g. --columns instruction=질문,output=답변.")


def row_layout(row: dict[str, Any], layouts: tuple[str, ...]) -> str:
    """The first of `layouts` whose required fields this row fills (else the first: its nulls are the reason)."""
    return next((layout for layout in layouts if all(row.get(k) is not None for k in LAYOUTS[layout])), layouts[0])


def text_drop(row: dict[str, Any]) -> str:
    """"" when a plain-text row can be trained on, else the code of why not."""
    text = row.get("text")
    if text is None:
        return "null_field"
    if not isinstance(text, str):
        return "not_text"
    return "" if text.strip() else "empty_text"


def row_messages(row: dict[str, Any], layout: str) -> list[dict[str, str]] | str:
    """The chat messages of one row in `layout`, or the code of why it cannot be trained on (a plain-text row has
    none: `text_row`)."""
    if layout == "text":
        return "text_row"
    if layout in ("messages", "conversations"):
        return _turns(row.get(layout), layout)
    if layout == "instruction":
        prompt, extra, answer, system = (row.get(k) for k in ("instruction", "input", "output", "system"))
    else:
        prompt, extra, answer, system = row.get("prompt"), None, row.get("completion"), row.get("system")
    if prompt is None or answer is None:
        return "null_field"
    if not all(isinstance(x, str) for x in (prompt, answer)) or any(
            x is not None and not isinstance(x, str) for x in (extra, system)):
        return "not_text"
    if not answer.strip():
        return "empty_answer"
    if extra:
        prompt += "\n\n" + extra
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def _turns(turns: Any, layout: str) -> list[dict[str, str]] | str:
    if turns is None:
        return "null_field"
    if not isinstance(turns, list) or not turns or not all(isinstance(t, dict) for t in turns):
        return "bad_turns"
    keys = [("role", "content"), ("from", "value")]
    keys = keys if layout == "messages" else keys[::-1]
    messages = []
    for turn in turns:
        # ShareGPT exports come keyed role/content as often as from/value (and chat data the other way round)
        role_key, text_key = next(((r, t) for r, t in keys if turn.get(r) is not None), keys[0])
        role, text = turn.get(role_key), turn.get(text_key)
        if role is None or text is None:
            return "null_field"
        if not isinstance(role, str) or not isinstance(text, str):
            return "not_text"
        role = role if role_key == "role" and role in CHAT_ROLES else SHAREGPT_ROLES.get(role.lower(), role)
        if role not in CHAT_ROLES:
            return "unknown_role"
        messages.append({"role": role, "content": text})
    answers = [m for m in messages if m["role"] == "assistant"]
    if not answers:
        return "no_answer"
    if not all(m["content"].strip() for m in answers):
        return "empty_answer"
    return messages
