"""The LM head and the loss only where there is something to learn: the positions whose next token is an answer
token.

A causal LM computes logits over the whole vocabulary at every position, then the loss ignores every position
whose next token is a prompt or a separator (label -100). For a chat model the LM head is a fifth of a small model's
step (SmolLM2-135M: 49,152 x 576 per token against about 3.5M weights per layer), and the prompt is often half the
tokens. transformers' causal LMs take `logits_to_keep` (the positions whose logits to compute) and the loss takes
`shift_labels` (the next-token labels, already aligned): given the kept positions and their next tokens, the loss is
the same mean over the same answer tokens, without the logits nobody reads.

Only packed batches (one row) are trimmed: `logits_to_keep` as one index list serves every transformers 5 release.
"""

from __future__ import annotations

from typing import Any

from attnpick.load.lora import base_model


class AnswerLogits:
    """A packed batch's collator, wrapped: adds `logits_to_keep` (positions whose next token has a label) and
    `shift_labels` (those labels), so the model projects and scores only them. Other batches pass unchanged."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        batch = self.collator(features)
        labels = batch.get("labels")
        if labels is None or labels.shape[0] != 1:
            return batch
        following = labels[0, 1:]
        keep = (following != -100).nonzero().flatten()
        if keep.numel() == 0:
            return batch  # nothing to learn here: the model's own loss says so
        batch["logits_to_keep"] = keep
        batch["shift_labels"] = following[keep].unsqueeze(0)
        return batch


def takes_kept_logits(model: Any) -> bool:
    """Whether the model's forward takes `logits_to_keep` (transformers' causal LMs do; remote code may not)."""
    import inspect

    target = base_model(model)
    try:
        return "logits_to_keep" in inspect.signature(target.forward).parameters
    except (TypeError, ValueError):
        return False
