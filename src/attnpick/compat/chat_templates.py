"""Unsloth's `unsloth.chat_templates` names, on attnpick's own code: `get_chat_template`, `standardize_sharegpt`,
`standardize_data_formats` and `train_on_responses_only`, so that a notebook's import line changes one word.

Each family's chat format is data (`ChatFormat`: what opens and closes a system, user and assistant turn, the
end-of-turn token, the default system message), written from the family's published format and turned into one
Jinja template by one builder. Turns are matched by role, never printed from it, so a ShareGPT `mapping`
(`from`/`value`, `human`/`gpt`) is a plain substitution in the template. The same markers tell
`train_on_responses_only` where answers start (`response_part`) and where prompts start (`instruction_part`).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from attnpick.errors import UsageError
from attnpick.training.sources import mapped

EOS = "{eos}"  # stands for the tokenizer's own end-of-sequence token in a format
DEFAULT_MAPPING = {"role": "role", "content": "content", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class ChatFormat:
    """One family's chat format. `system="merge"`: the family has no system turn, a system message opens the first
    user turn (Mistral, Gemma); `system="always"`: a system turn is always written, empty when none is given
    (EXAONE)."""

    name: str
    user: tuple[str, str]
    assistant: tuple[str, str]
    system_turn: tuple[str, str] = ("", "")
    stop: str = EOS
    bos: str = ""
    default_system: str | None = None
    system: str = "turn"  # turn, merge, always

    @property
    def instruction_part(self) -> str:
        return self.user[0]

    @property
    def response_part(self) -> str:
        return self.assistant[0]

    def special_tokens(self, eos: str | None) -> list[str]:
        """The tokens this format needs the vocabulary to hold as single tokens."""
        tokens = [t for t in (self.bos, self.stop) if t and t != EOS]
        for text in (*self.user, *self.assistant, *self.system_turn):
            tokens += [piece for piece in _special_pieces(text) if piece not in tokens]
        return [t.replace(EOS, eos or "") for t in tokens if t.replace(EOS, eos or "")]


def _special_pieces(text: str) -> list[str]:
    """'<|im_start|>user\\n' -> ['<|im_start|>']: the bracketed control tokens a marker holds."""
    return re.findall(r"<\|[^|>]+\|>|\[\|[^|\]]+\|\]|<start_of_turn>|<end_of_turn>|<bos>|</s>|<s>|\[/?INST\]", text)


_CHATML = (("<|im_start|>user\n", "<|im_end|>\n"), ("<|im_start|>assistant\n", "<|im_end|>\n"),
           ("<|im_start|>system\n", "<|im_end|>\n"))
_LLAMA3 = ChatFormat("llama-3", ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
                     ("<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"),
                     ("<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>"), stop="<|eot_id|>",
                     bos="<|begin_of_text|>")
_GEMMA = ChatFormat("gemma", ("<start_of_turn>user\n", "<end_of_turn>\n"),
                    ("<start_of_turn>model\n", "<end_of_turn>\n"), stop="<end_of_turn>", bos="<bos>", system="merge")

CHAT_FORMATS: dict[str, ChatFormat] = {f.name: f for f in (
    ChatFormat("chatml", *_CHATML, stop="<|im_end|>"),
    ChatFormat("qwen-2.5", *_CHATML, stop="<|im_end|>",
               default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
    _LLAMA3,
    ChatFormat("mistral", ("[INST] ", " [/INST]"), ("", EOS), stop=EOS, bos="<s>", system="merge"),
    _GEMMA,
    ChatFormat("phi-3", ("<|user|>\n", "<|end|>\n"), ("<|assistant|>\n", "<|end|>\n"), ("<|system|>\n", "<|end|>\n"),
               stop="<|end|>"),
    ChatFormat("phi-4", ("<|im_start|>user<|im_sep|>", "<|im_end|>"), ("<|im_start|>assistant<|im_sep|>", "<|im_end|>"),
               ("<|im_start|>system<|im_sep|>", "<|im_end|>"), stop="<|im_end|>"),
    ChatFormat("zephyr", ("<|user|>\n", EOS + "\n"), ("<|assistant|>\n", EOS + "\n"), ("<|system|>\n", EOS + "\n")),
    ChatFormat("vicuna", ("USER: ", " "), ("ASSISTANT: ", EOS), ("", " "),
               default_system="A chat between a curious user and an artificial intelligence assistant. The assistant "
               "gives helpful, detailed, and polite answers to the user's questions."),
    ChatFormat("alpaca", ("### Instruction:\n", "\n\n"), ("### Response:\n", EOS + "\n\n"), ("", "\n\n"),
               default_system="Below are some instructions that describe some tasks. Write responses that "
               "appropriately complete each request."),
    ChatFormat("exaone", ("[|user|]", "\n"), ("[|assistant|]", "[|endofturn|]\n"), ("[|system|]", "[|endofturn|]\n"),
               stop="[|endofturn|]", system="always"),
)}
# The names Unsloth's notebooks use for the same formats.
ALIASES = {
    **dict.fromkeys(("llama-3.1", "llama-31", "llama-3.2", "llama-32", "llama-3.3", "llama3"), "llama-3"),
    **dict.fromkeys(("qwen2.5", "qwen-25", "qwen25"), "qwen-2.5"),
    **dict.fromkeys(("gemma2", "gemma-2", "gemma-3", "gemma3"), "gemma"),
    **dict.fromkeys(("phi-35", "phi-3.5"), "phi-3"), "phi4": "phi-4",
    **dict.fromkeys(("exaone-3.5", "exaone3"), "exaone"), "unsloth": "chatml",
}


def chat_format(name: str) -> ChatFormat:
    """The format called `name` (Unsloth's spellings too); `UsageError` listing the known ones."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in CHAT_FORMATS:
        known = ", ".join(sorted({*CHAT_FORMATS, *ALIASES}))
        raise UsageError(f"Unknown chat_template {name!r}. Choose one of: {known}; or pass (template, eos_token).")
    return CHAT_FORMATS[key]


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def build_template(fmt: ChatFormat, eos: str, system_message: str | None = None,
                   mapping: Mapping[str, str] | None = None) -> str:
    """The Jinja chat template of `fmt`: turns matched by role, the generation prompt, the default (or given) system
    message; `mapping` renames the keys and role names (ShareGPT's from/value, human/gpt)."""
    def q(text: str) -> str:
        return _quote(text.replace(EOS, eos))

    (u0, u1), (a0, a1), (s0, s1) = fmt.user, fmt.assistant, fmt.system_turn
    system = system_message if system_message is not None else fmt.default_system
    # A message's content is text, or a list of parts (`[{"type": "text", "text": ...}]`, Gemma 3's and the
    # multimodal notebooks' messages): `content(...)` writes the text parts either way.
    parts = ["{% macro content(c) %}{% if c is string %}{{ c }}{% else %}{% for part in c %}"
             "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}{% endmacro %}"]
    parts.append(f"{{{{ {q(fmt.bos)} }}}}" if fmt.bos else "")
    parts.append("{% set ns = namespace(system='') %}")
    parts.append("{% if messages and messages[0]['role'] == 'system' %}"
                 "{% set ns.system = content(messages[0]['content']) %}"
                 "{% set turns = messages[1:] %}{% else %}{% set turns = messages %}"
                 + (f"{{% set ns.system = {q(system)} %}}" if system else "") + "{% endif %}")
    if fmt.system == "merge":
        parts.append("{% for message in turns %}{% if message['role'] == 'user' %}{{ " + q(u0) + " }}"
                     "{% if loop.first and ns.system %}{{ ns.system + '\\n\\n' }}{% endif %}"
                     "{{ content(message['content']) }}{{ " + q(u1) + " }}")
    else:
        opener = "{% if ns.system %}{{ " + q(s0) + " + ns.system + " + q(s1) + " }}{% endif %}"
        if fmt.system == "always":
            opener = "{{ " + q(s0) + " + ns.system + " + q(s1) + " }}"
        parts.append(opener)
        parts.append("{% for message in turns %}{% if message['role'] == 'user' %}"
                     "{{ " + q(u0) + " }}{{ content(message['content']) }}{{ " + q(u1) + " }}")
    parts.append("{% elif message['role'] == 'assistant' %}{{ " + q(a0) + " }}{{ content(message['content']) }}{{ "
                 + q(a1) + " }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ " + q(a0) + " }}{% endif %}")
    template = "".join(parts)
    return _mapped(template, mapping) if mapping else template


def _mapped(template: str, mapping: Mapping[str, str]) -> str:
    """ShareGPT keys and role names in place of role/content/user/assistant."""
    given = {**DEFAULT_MAPPING, **mapping}
    for key in ("role", "content"):
        template = template.replace(f"message['{key}']", f"message['{given[key]}']")
        template = template.replace(f"messages[0]['{key}']", f"messages[0]['{given[key]}']")
    for role in ("user", "assistant"):
        template = template.replace(f"== '{role}'", f"== '{given[role]}'")
    return template


def get_chat_template(tokenizer: Any, chat_template: str | tuple[str, str] = "chatml",
                      mapping: Mapping[str, str] | None = None, map_eos_token: bool = True,
                      system_message: str | None = None, **ignored: Any) -> Any:
    """Give `tokenizer` a family's chat template, as Unsloth's `get_chat_template` does.

    Args:
        tokenizer: the tokenizer `FastLanguageModel.from_pretrained` returned.
        chat_template: a format name (chatml, llama-3 / llama-3.1 / llama-3.2, qwen-2.5, mistral, gemma / gemma2 /
            gemma-3, phi-3, phi-4, zephyr, vicuna, alpaca, exaone), or `(jinja_template, eos_token)`.
        mapping: the dataset's keys and role names, e.g. ShareGPT's
            `{"role": "from", "content": "value", "user": "human", "assistant": "gpt"}`.
        map_eos_token: make the format's end-of-turn token the tokenizer's eos token (generation stops there and
            TRL ends text samples with it), where the vocabulary holds it.
        system_message: the system message used when a conversation has none (default: the family's).

    Returns:
        The same tokenizer, its `chat_template` set. A warning names the format's special tokens that this
        vocabulary lacks (a Llama-3 template on EXAONE): they would be split into ordinary pieces.
    """
    if not isinstance(map_eos_token, bool):
        raise UsageError(f"map_eos_token must be True or False, got {map_eos_token!r}.")
    eos = tokenizer.eos_token or ""
    if isinstance(chat_template, (tuple, list)):
        if len(chat_template) != 2 or not all(isinstance(x, str) for x in chat_template):
            raise UsageError("chat_template as a pair is (jinja_template, eos_token), both strings.")
        template, stop = chat_template
        fmt = None
    elif isinstance(chat_template, str):
        fmt = chat_format(chat_template)
        template, stop = build_template(fmt, eos, system_message, mapping), fmt.stop.replace(EOS, eos)
    else:
        raise UsageError(f"chat_template must be a format name or (template, eos_token), got {chat_template!r}.")
    vocab = tokenizer.get_vocab()
    missing = [t for t in (fmt.special_tokens(eos) if fmt else [stop]) if t not in vocab]
    if missing:
        own = " chat_template='exaone' matches EXAONE's vocabulary." if "[|endofturn|]" in vocab else \
            " The model's own template (the one it was loaded with) matches its vocabulary."
        warnings.warn(f"get_chat_template({chat_template if isinstance(chat_template, str) else 'custom'!r}): "
                      f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in this tokenizer's "
                      f"vocabulary: the template is installed as asked, and its turn markers will be split into "
                      f"ordinary pieces.{own}",
                      UserWarning, stacklevel=2)
    tokenizer.chat_template = template
    if map_eos_token and stop and stop in vocab and stop != eos:
        tokenizer.eos_token = stop
    tokenizer._attnpick_chat_format = fmt
    tokenizer._attnpick_chat_mapping = dict(mapping) if mapping else None  # the keys its template reads
    return tokenizer


def response_markers(tokenizer: Any) -> tuple[str, str]:
    """(instruction_part, response_part) for the tokenizer's template: the format `get_chat_template` gave it, else
    found by rendering (what the generation prompt adds after a user turn opens an answer; what a second user turn
    adds before its text opens a prompt), else the first known format whose markers the template's text holds."""
    fmt = getattr(tokenizer, "_attnpick_chat_format", None)
    if fmt is not None:
        return fmt.instruction_part, fmt.response_part
    rendered = _rendered_markers(tokenizer)
    if rendered is not None:
        return rendered
    template = tokenizer.chat_template or ""
    for fmt in CHAT_FORMATS.values():
        if fmt.instruction_part.strip() and fmt.response_part.strip() and \
                _literal(fmt.instruction_part) in template and _literal(fmt.response_part) in template:
            return fmt.instruction_part, fmt.response_part
    raise UsageError("train_on_responses_only: cannot tell where answers start in this tokenizer's chat template. "
                     "Pass instruction_part= and response_part= (e.g. '[|user|]' and '[|assistant|]').")


_PROMPT, _ANSWER, _NEXT = "ATTNPICKPROMPTTEXT", "ATTNPICKANSWERTEXT", "ATTNPICKNEXTPROMPT"


def _rendered_markers(tokenizer: Any) -> tuple[str, str] | None:
    def render(messages: list[dict[str, str]], prompt: bool = False) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)

    user, answer = {"role": "user", "content": _PROMPT}, {"role": "assistant", "content": _ANSWER}
    try:
        alone, asked = render([user]), render([user], prompt=True)
        one, two = render([user, answer]), render([user, answer, {"role": "user", "content": _NEXT}])
    except Exception:  # noqa: BLE001 - a template that cannot render these: fall back to the known formats
        return None
    if not (asked.startswith(alone) and two.startswith(one) and _NEXT in two[len(one):]):
        return None
    response, instruction = asked[len(alone):], two[len(one):].split(_NEXT)[0]
    return (instruction, response) if response.strip() and instruction.strip() else None


def _literal(marker: str) -> str:
    """A marker as a template's source holds it: control tokens without the newline that follows them."""
    return marker.split("\n")[0].rstrip()


def _find(ids: list[int], pattern: list[int], start: int = 0) -> int:
    for i in range(start, len(ids) - len(pattern) + 1):
        if ids[i:i + len(pattern)] == pattern:
            return i
    return -1


def response_labels(input_ids: Sequence[int], instruction: list[int], response: list[int]) -> list[int]:
    """Labels equal to the ids inside answers (after each response marker, up to the next instruction marker) and
    -100 everywhere else, markers included."""
    ids = list(input_ids)
    labels = [-100] * len(ids)
    at = _find(ids, response)
    while at >= 0:
        begin = at + len(response)
        end = _find(ids, instruction, begin) if instruction else -1
        end = len(ids) if end < 0 else end
        labels[begin:end] = ids[begin:end]
        at = _find(ids, response, end)
    return labels


class _ResponsesOnly:
    """A collator wrapper: features without labels get answer-only labels before the inner collator pads them."""

    def __init__(self, inner: Callable[[list[dict[str, Any]]], Any], label: Callable[[list[int]], list[int]]) -> None:
        self.inner = inner
        self.label = label

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        features = [{k: v for k, v in f.items() if k in _MODEL_INPUTS} for f in features]  # TRL keeps its text column
        features = [f if "labels" in f else {**f, "labels": self.label(list(f["input_ids"]))} for f in features]
        return self.inner(features)


_MODEL_INPUTS = frozenset({"input_ids", "attention_mask", "labels", "position_ids", "token_type_ids"})


def train_on_responses_only(trainer: Any, instruction_part: str | None = None, response_part: str | None = None,
                            **ignored: Any) -> Any:
    """Unsloth's `train_on_responses_only`: the loss on the assistant's answers only.

    Every token outside an answer gets label -100, in the trainer's datasets and for data the collator tokenizes
    later; the markers are inferred from the template (`get_chat_template`'s format, or a known family's markers in
    the tokenizer's own template, EXAONE's included) when not given.

    Returns:
        The trainer.
    """
    tokenizer = getattr(trainer, "processing_class", None) or getattr(trainer, "tokenizer", None)
    if tokenizer is None:
        raise UsageError("train_on_responses_only: the trainer has no tokenizer (processing_class).")
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor's text tokenizer
    if instruction_part is None or response_part is None:
        inferred = response_markers(tokenizer)
        instruction_part = instruction_part if instruction_part is not None else inferred[0]
        response_part = response_part if response_part is not None else inferred[1]
    instruction = tokenizer(instruction_part, add_special_tokens=False)["input_ids"]
    response = tokenizer(response_part, add_special_tokens=False)["input_ids"]
    if not response:
        raise UsageError("train_on_responses_only: response_part is empty; pass the text that opens an answer.")

    def label(ids: list[int]) -> list[int]:
        return response_labels(ids, instruction, response)

    def with_labels(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {"labels": [label(list(ids)) for ids in batch["input_ids"]]}

    for attr in ("train_dataset", "eval_dataset"):
        dataset = getattr(trainer, attr, None)
        if dataset is None:
            continue
        if isinstance(dataset, dict):
            setattr(trainer, attr, {k: _labelled(v, with_labels) for k, v in dataset.items()})
        else:
            setattr(trainer, attr, _labelled(dataset, with_labels))
    dataset = trainer.train_dataset
    if dataset is not None and hasattr(dataset, "__len__") and len(dataset) and "labels" in dataset.column_names:
        empty = sum(1 for row in dataset["labels"] if all(x == -100 for x in row))
        if empty:
            warnings.warn(f"train_on_responses_only: {empty} of {len(dataset)} rows have no answer token after "
                          f"{response_part!r} (cut by max_seq_length, or another template); they add nothing to the "
                          "loss.", UserWarning, stacklevel=2)
    trainer.data_collator = _ResponsesOnly(_padding_collator(trainer, tokenizer), label)
    return trainer


def _labelled(dataset: Any, with_labels: Callable[[dict[str, list[Any]]], dict[str, list[Any]]]) -> Any:
    if "input_ids" not in getattr(dataset, "column_names", []) or not hasattr(dataset, "map"):
        return dataset  # not tokenized yet: the collator labels it
    return mapped(dataset, with_labels, "labels on responses only", batched=True)


def _padding_collator(trainer: Any, tokenizer: Any) -> Any:
    """A collator that keeps the labels it is given: padding-free batches flattened (position_ids restart per sample),
    padded batches padded with -100 labels."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    args = getattr(trainer, "args", None)
    if getattr(args, "padding_free", False) or getattr(trainer.data_collator, "padding_free", False):
        return DataCollatorWithFlattening(return_position_ids=True)
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100,
                                  pad_to_multiple_of=getattr(args, "pad_to_multiple_of", None))
