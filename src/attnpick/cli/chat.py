"""`attnpick chat`: talk to a run, a saved adapter or a model, loaded through the proven chain (4-bit as it was
trained; a plain model in 4-bit, as `attnpick train` loads it), with the model's own chat template.

One answer with `prompt`; otherwise a conversation: each line read is a user turn, the answer is streamed as it is
generated and stays in the history; `/reset` starts over, `/exit` (or the end of input) stops. `converse` takes
the reading and writing as functions, so a terminal, a pipe and a test drive the same loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from attnpick.errors import UsageError
from attnpick.export import adapters
from attnpick.model import tiny
from attnpick.model.options import ModelOptions, check_max_seq_length
from attnpick.model.resolve import DEFAULT_MAX_SEQ_LENGTH
from attnpick.training.model_checks import check_chat_template
from attnpick.util.options import finite, option, whole

RESET, EXIT = "/reset", "/exit"


@dataclass
class ChatConfig(ModelOptions):
    """Every option of `attnpick chat`; `validate()` refuses bad input before anything loads."""

    model: str = option(tiny.NAME, "a run folder of 'attnpick train', a saved adapter folder, or a model",
                        positional=True)
    prompt: str | None = option(None, "one message: print the answer and stop (default: a conversation)",
                                metavar="TEXT")
    system: str | None = option(None, "a system message before the conversation", metavar="TEXT")
    max_new_tokens: int = option(256, "longest answer in tokens", metavar="N")
    temperature: float | None = option(None, "sampling temperature; 0 picks the most likely token (greedy). "
                                       "Default: 0 with --prompt (one answer, the same every time), 0.7 in a "
                                       "conversation", metavar="T", type=float)
    backend: str = option("auto", "attention backend: auto (default) or one name from 'attnpick doctor'",
                          kind="backend")
    load_in_4bit: bool = option(True, "load the model in full precision, not 4-bit (a run loads as it trained "
                                "unless this is given)", flag="--no-4bit", action="store_false")
    max_seq_length: int = option(DEFAULT_MAX_SEQ_LENGTH, "the context the model is loaded for (the conversation is "
                                 "cut to it)", metavar="N")

    def validate(self) -> None:
        self.validate_model()
        whole(self.max_new_tokens, "--max-new-tokens", 1)
        check_max_seq_length(self.max_seq_length)
        if self.temperature is not None:
            finite(self.temperature, "--temperature", low=0.0)
        if self.prompt is not None and not self.prompt.strip():
            raise UsageError("--prompt is empty: give the message, e.g. --prompt \"서울은 어떤 곳인가요?\".")
        adapters.locate(self.model)  # an unfinished run folder is refused now

    @property
    def sampling_temperature(self) -> float:
        """The temperature asked, else greedy for a one-shot --prompt and 0.7 for a conversation."""
        if self.temperature is not None:
            return self.temperature
        return 0.0 if self.prompt is not None else 0.7

    def load(self) -> tuple[Any, Any, Any]:
        """(model, tokenizer, LoadReport), ready to generate."""
        self.validate()
        model, tokenizer, report = adapters.load_trained(
            self.model, self.max_seq_length, load_in_4bit=None if self.load_in_4bit else False, trainable=False,
            backend=self.backend, **self.load_keywords())
        if not getattr(tokenizer, "chat_template", None):
            raise UsageError(f"{self.model}'s tokenizer has no chat template. Chat with an instruction-tuned model, "
                             "or save one with get_chat_template(tokenizer, ...) and tokenizer.save_pretrained.")
        check_chat_template(tokenizer.chat_template, self.model)  # as train checks it: one line, not a crash
        model.eval()
        return model, tokenizer, report

    def new_tokens(self, model: Any, prompt_tokens: int) -> int:
        """How many tokens an answer may have: --max-new-tokens, within the room the model's context leaves after
        the prompt (at least one)."""
        return max(1, min(self.max_new_tokens, context_of(model) - prompt_tokens))


def context_of(model: Any) -> int:
    """The model's context in tokens (`max_position_embeddings`), or a very large number where it gives none."""
    config = getattr(model, "config", None)
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return int(limit) if isinstance(limit, int) and limit > 0 else 1 << 62


def context_note(config: ChatConfig, model: Any) -> str | None:
    """One line when --max-new-tokens is more than the context can hold, else None."""
    context = context_of(model)
    if config.max_new_tokens < context:
        return None
    return (f"attnpick: --max-new-tokens {config.max_new_tokens} is more than {config.model}'s context of {context} "
            "tokens: each answer stops where the context ends (the context minus the conversation so far).")


def answer(model: Any, tokenizer: Any, messages: list[dict[str, str]], config: ChatConfig,
           write: Callable[[str], None]) -> str:
    """Generate the assistant's next turn for `messages`, writing it piece by piece as it comes; returns it."""
    import torch
    from transformers import TextStreamer

    class _Stream(TextStreamer):  # type: ignore[misc]
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            write(text)

    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    keep = max(1, min(config.max_seq_length, context_of(model) - 1))  # room for one new token at least
    inputs = {k: v[:, -keep:].to(model.device) for k, v in inputs.items()}
    temperature = config.sampling_temperature
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=config.new_tokens(model, inputs["input_ids"].shape[1]),
                             pad_token_id=tokenizer.pad_token_id,
                             streamer=_Stream(tokenizer, skip_prompt=True, skip_special_tokens=True), **sampling)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def opening(config: ChatConfig) -> list[dict[str, str]]:
    """The messages a conversation starts from: the system message, when one is given."""
    return [{"role": "system", "content": config.system}] if config.system else []


def converse(model: Any, tokenizer: Any, config: ChatConfig, read: Callable[[], str | None],
             write: Callable[[str], None]) -> int:
    """The conversation: `read()` gives the next user line (None at the end of input); returns the answers given."""
    start = opening(config)
    messages = list(start)
    answers = 0
    while True:
        line = read()
        if line is None or line.strip() == EXIT:
            return answers
        text = line.strip()
        if not text:
            continue
        if text == RESET:
            messages = list(start)
            write("(conversation reset)\n")
            continue
        messages.append({"role": "user", "content": text})
        messages.append({"role": "assistant", "content": answer(model, tokenizer, messages, config, write)})
        write("\n")
        answers += 1
