"""`from attnpick.chat_templates import get_chat_template`, as Unsloth's notebooks write
`from unsloth.chat_templates import ...`: the names of `attnpick.compat.chat_templates` and
`attnpick.compat.dataset_formats`, where they are defined."""

from attnpick.compat.chat_templates import get_chat_template, train_on_responses_only
from attnpick.compat.dataset_formats import (
    apply_chat_template,
    standardize_data_formats,
    standardize_sharegpt,
    to_sharegpt,
)

__all__ = ["apply_chat_template", "get_chat_template", "standardize_data_formats", "standardize_sharegpt",
           "to_sharegpt", "train_on_responses_only"]
