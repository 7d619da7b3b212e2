"""`from attnpick.chat_templates import get_chat_template`, as Unsloth's notebooks write
`from unsloth.chat_templates import ...`: the names of `attnpick.compat.chat_templates`, where they are defined."""

from attnpick.compat.chat_templates import (
    get_chat_template,
    standardize_data_formats,
    standardize_sharegpt,
    train_on_responses_only,
)

__all__ = ["get_chat_template", "standardize_data_formats", "standardize_sharegpt",
           "train_on_responses_only"]
