"""What a model folder must give a training run, checked before any weight is read: a chat template that parses and
renders a conversation (the folder's own, or `--chat-template FILE`). Each failure is one `UsageError` naming the
fix; the context length is `model_info.check_context`."""

from __future__ import annotations

import json
from pathlib import Path

from attnpick.errors import UsageError, first_line
from attnpick.util import files

SAMPLE = [{"role": "system", "content": "짧게 답하세요."}, {"role": "user", "content": "안녕하세요?"},
          {"role": "assistant", "content": "안녕하세요!"}]


def folder_chat_template(folder: Path) -> str | None:
    """The chat template a tokenizer saved in `folder` carries: chat_template.jinja, or tokenizer_config.json's."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return files.read_text(jinja)
    try:
        config = json.loads(files.read_text(folder / "tokenizer_config.json"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):  # named templates: the default one
        template = next((t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"),
                        None)
    return template if isinstance(template, str) else None


def read_chat_template(path: str) -> str:
    """`--chat-template FILE`: a Jinja file, read as UTF-8 (with or without a BOM) or UTF-16."""
    try:
        return files.read_text(path)
    except FileNotFoundError:
        raise UsageError(f"--chat-template {path!r} does not exist. Give a Jinja chat template file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--chat-template {path!r} cannot be read ({exc}). Save it as UTF-8.") from None


def check_chat_template(template: str | None, where: str) -> None:
    """The template parses and renders a system/user/assistant conversation, as transformers renders it."""
    if not template or not template.strip():
        raise UsageError(f"{where} has no chat template, so attnpick cannot tell prompts from answers. Add a "
                         "chat_template.jinja to the model folder, or pass --chat-template FILE.")
    from transformers.utils.chat_template_utils import render_jinja_template

    try:
        rendered, _ = render_jinja_template(conversations=[SAMPLE], chat_template=template)
    except Exception as exc:  # noqa: BLE001 - a syntax error, an undefined name, the template's own raise_exception
        line = getattr(exc, "lineno", None)
        at = f" (line {line})" if line else ""
        raise UsageError(f"{where}'s chat template does not render a conversation{at}: {type(exc).__name__}: "
                         f"{first_line(exc) or 'no message'}. Fix it, or pass --chat-template FILE.") from None
    if not rendered or "안녕하세요!" not in rendered[0]:
        raise UsageError(f"{where}'s chat template drops the assistant's answer when it renders a conversation. "
                         "Pass --chat-template FILE with a template that writes every turn.")
