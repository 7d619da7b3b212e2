"""An Ollama Modelfile for exported GGUF files: `FROM` the file, `TEMPLATE` in Ollama's Go template language from the
tokenizer's chat template, and a `PARAMETER stop` for each end-of-turn token.

The turns are found by rendering, not by knowing the family: the tokenizer renders a conversation whose texts are
sentinels, and the pieces between them are what opens and closes each turn. So the model's own template, a
`get_chat_template` format and a custom `apply_chat_template` template all give their Ollama equivalent. The pieces
are checked by rendering two more conversations with them and comparing with the tokenizer's own rendering; where
they differ (a template that changes with the turn number, say), the Modelfile is written without `TEMPLATE` and
says why, so that Ollama never runs a prompt format the model was not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnpick.util import files

NAME = "Modelfile"
_USER, _ANSWER, _USER2, _ANSWER2, _SYSTEM = ("ATTNPICKUSERONE", "ATTNPICKANSWERONE", "ATTNPICKUSERTWO",
                                             "ATTNPICKANSWERTWO", "ATTNPICKSYSTEM")


@dataclass(frozen=True)
class Turns:
    """What the chat template writes around each turn (BOS left out: llama.cpp adds it)."""

    user_open: str  # before a user message
    after_user: str  # after a user message: its close and the assistant's opener (the generation prompt)
    answer_close: str  # after an assistant message
    default: str  # written where the conversation has no system message
    system: tuple[str, str] | None  # (before, after) a system message's text; None: the template has none
    system_inside_user: bool  # the system text opens the first user turn (Mistral, Gemma)
    mapping: dict[str, str] | None = None  # the message keys and role names the template reads (ShareGPT's)

    def render(self, messages: list[dict[str, str]]) -> str:
        """The text these turns make of `messages` (with the generation prompt after a last user turn)."""
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
        turns = messages[1:] if system is not None else messages
        out = ""
        if system is not None and self.system is not None and not self.system_inside_user:
            out += self.system[0] + system + self.system[1]
        elif system is None or self.system_inside_user:
            out += self.default
        first = True
        for message in turns:
            if message["role"] == "user":
                inline = self.system[0] + system + self.system[1] if (
                    first and system is not None and self.system is not None and self.system_inside_user) else ""
                out += self.user_open + inline + message["content"] + self.after_user
                first = False
            else:
                out += message["content"] + self.answer_close
        return out

    def go_template(self) -> str:
        """The same as an Ollama (Go) template over `.System` and `.Messages`."""
        # No `{{-`: it would trim the newlines that are part of the format.
        top = _go(self.default)
        if self.system is not None and not self.system_inside_user:
            top = "{{ if .System }}" + _go(self.system[0]) + "{{ .System }}" + _go(self.system[1])
            top += ("{{ else }}" + _go(self.default) if self.default else "") + "{{ end }}"
        if self.system is None or not self.system_inside_user:
            return (top + "{{ range .Messages }}{{ if eq .Role \"user\" }}" + _go(self.user_open) + "{{ .Content }}"
                    + _go(self.after_user) + self._answer())
        # the system text opens the first user turn: a variable marks that turn
        return (top + "{{ $first := true }}{{ range .Messages }}{{ if eq .Role \"user\" }}" + _go(self.user_open)
                + "{{ if and $first $.System }}" + _go(self.system[0]) + "{{ $.System }}" + _go(self.system[1])
                + "{{ end }}{{ .Content }}" + _go(self.after_user) + "{{ $first = false }}" + self._answer())

    def _answer(self) -> str:
        return "{{ else if eq .Role \"assistant\" }}{{ .Content }}" + _go(self.answer_close) + "{{ end }}{{ end }}"


def _go(text: str) -> str:
    """Literal text for a Go template: `{{` would open an action."""
    return text.replace("{{", "{{ \"{{\" }}")


def added_bos(tokenizer: Any) -> str:
    """The BOS token's text where the tokenizer adds it to every encoding (llama.cpp then adds it from the GGUF
    file's `add_bos_token`, so the template leaves it out), else ""."""
    bos, bos_id = getattr(tokenizer, "bos_token", None), getattr(tokenizer, "bos_token_id", None)
    try:
        ids = tokenizer("A").input_ids
    except Exception:  # noqa: BLE001 - a tokenizer that cannot encode here: keep the template's text whole
        return ""
    return bos if bos and bos_id is not None and ids and ids[0] == bos_id else ""


SHAREGPT = {"role": "from", "content": "value", "user": "human", "assistant": "gpt"}


def _render(tokenizer: Any, messages: list[dict[str, str]], prompt: bool, mapping: dict[str, str] | None) -> str:
    """The tokenizer's rendering of role/content `messages` (in the keys and role names `mapping` says its template
    reads: ShareGPT's after `get_chat_template(mapping=)`), BOS left out where the tokenizer adds it."""
    if mapping:
        messages = [{mapping.get("role", "role"): mapping.get(m["role"], m["role"]),
                     mapping.get("content", "content"): m["content"]} for m in messages]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
    bos = added_bos(tokenizer)
    return text[len(bos):] if bos and text.startswith(bos) else text


def turns_of(tokenizer: Any) -> Turns | None:
    """The tokenizer's chat template as `Turns`, or None where it cannot be read that way (or has none). A template
    that reads ShareGPT's keys (`get_chat_template(mapping=)`, saved and loaded again) is read in those."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    given = getattr(tokenizer, "_attnpick_chat_mapping", None)
    for mapping in ([given] if given else [None, SHAREGPT]):
        turns = _turns_in(tokenizer, mapping)
        if turns is not None:
            return turns
    return None


def _turns_in(tokenizer: Any, mapping: dict[str, str] | None) -> Turns | None:
    def render(messages: list[dict[str, str]], prompt: bool) -> str:
        return _render(tokenizer, messages, prompt, mapping)

    user, answer = {"role": "user", "content": _USER}, {"role": "assistant", "content": _ANSWER}
    try:
        one = render([user], True)
        pair = render([user, answer], False)
        two = render([user, answer, {"role": "user", "content": _USER2}], True)
    except Exception:  # noqa: BLE001 - a template that refuses such a conversation: no Ollama template
        return None
    if one.count(_USER) != 1 or pair.count(_ANSWER) != 1 or two.count(_USER2) != 1:
        return None
    head, after = one.split(_USER)
    if not pair.startswith(head + _USER + after):
        return None
    close = pair.split(_ANSWER, 1)[1]
    between = two.split(_ANSWER, 1)[1].split(_USER2, 1)[0]
    if not between.startswith(close):
        return None
    user_open = between[len(close):]
    if not head.endswith(user_open):
        return None
    default = head[:len(head) - len(user_open)]
    system, inside = _system(render, user, default, user_open)
    return Turns(user_open, after, close, default, system, inside, mapping)


def _system(render: Any, user: dict[str, str], default: str, user_open: str) -> tuple[tuple[str, str] | None, bool]:
    try:
        text = render([{"role": "system", "content": _SYSTEM}, user], True)
    except Exception:  # noqa: BLE001 - a template without system turns
        return None, False
    if text.count(_SYSTEM) != 1:
        return None, False
    head = text.split(_USER)[0]
    before, after = head.split(_SYSTEM)
    if head.endswith(user_open) and after.endswith(user_open):
        return (before, after[:len(after) - len(user_open)]), False
    if before.startswith(default + user_open):  # the system text opens the first user turn
        return (before[len(default + user_open):], after), True
    return None, False


def checked(tokenizer: Any, turns: Turns) -> bool:
    """Whether `turns` render two conversations (with and without a system message, two exchanges) exactly as the
    tokenizer does."""
    talk = [{"role": "user", "content": "하나"}, {"role": "assistant", "content": "one"},
            {"role": "user", "content": "둘"}]
    cases = [talk] + ([[{"role": "system", "content": "짧게."}, *talk]] if turns.system is not None else [])
    return all(_render(tokenizer, messages, True, turns.mapping) == turns.render(messages) for messages in cases)


def stop_tokens(tokenizer: Any, turns: Turns | None) -> list[str]:
    """The tokens generation stops at: the eos token and the answer's closing token, where it is one token."""
    vocab = tokenizer.get_vocab()
    stops = [tokenizer.eos_token] if getattr(tokenizer, "eos_token", None) else []
    if turns is not None and turns.answer_close.strip() in vocab:
        stops.append(turns.answer_close.strip())
    return list(dict.fromkeys(s for s in stops if s))


def modelfile(tokenizer: Any, source: str) -> str:
    """The Modelfile text for the GGUF file `source` (`./name`: beside the Modelfile) and this tokenizer's chat
    template."""
    turns = turns_of(tokenizer)
    lines = [f"FROM {source}", ""]
    template = turns.go_template() if turns is not None and checked(tokenizer, turns) else None
    if template is not None and '"""' not in template:
        lines += [f'TEMPLATE """{template}"""', ""]
    else:
        lines += ["# No TEMPLATE: attnpick could not restate this tokenizer's chat template in Ollama's template",
                  "# language exactly; give prompts already formatted, or write a TEMPLATE by hand.", ""]
    lines += [f'PARAMETER stop "{s}"' for s in stop_tokens(tokenizer, turns if template else None)]
    return "\n".join(lines) + "\n"


def write(folder: Path, gguf_name: str, tokenizer: Any) -> Path:
    """`folder/Modelfile` for `gguf_name`, written whole (a temporary file renamed into place); the text is also
    `tokenizer._ollama_modelfile`, as Unsloth sets it."""
    text = modelfile(tokenizer, f"./{gguf_name}")
    path = folder / NAME
    files.write_text(path, text)
    tokenizer._ollama_modelfile = text
    return path
