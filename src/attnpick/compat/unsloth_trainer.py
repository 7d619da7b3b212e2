"""Unsloth's `UnslothTrainer` and `UnslothTrainingArguments`: TRL's SFTTrainer with the embeddings in their own
optimizer group, as Unsloth's continued-pretraining notebooks use them.

    from attnpick import UnslothTrainer, UnslothTrainingArguments  # was: from unsloth import ...

`UnslothTrainingArguments` is TRL's `SFTConfig` (so it takes `dataset_text_field`, `max_length` and Unsloth's
keywords, see `attnpick.compat.trl_keywords`) plus `embedding_learning_rate` and `loraplus_lr_ratio`.
`UnslothTrainer` builds its optimizer from the trainer's own optimizer class and keywords (transformers'
`Trainer.get_optimizer_cls_and_kwargs`, so `optim="adamw_8bit"` means what it means there) with parameter groups:

- the input embedding and the LM head (what `get_peft_model(target_modules=[..., "embed_tokens", "lm_head"])`
  trains as full modules through peft's `modules_to_save`, or the model's own under full fine-tuning) at
  `embedding_learning_rate`;
- LoRA's B matrices at `learning_rate * loraplus_lr_ratio` when that is given (LoRA+);
- everything else at `learning_rate`; weight decay where the Trainer would decay (no biases, no norms).

Without either option it is TRL's SFTTrainer unchanged.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from trl import SFTConfig, SFTTrainer

from attnpick.compat import trl_keywords
from attnpick.errors import UsageError
from attnpick.load.lora import EMBEDDING_MODULES

trl_keywords.install()

@dataclass
class UnslothTrainingArguments(SFTConfig):
    """TRL's SFTConfig with Unsloth's `embedding_learning_rate` and `loraplus_lr_ratio`."""

    embedding_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the input embedding and the LM head (None: learning_rate)."})
    loraplus_lr_ratio: float | None = field(
        default=None, metadata={"help": "LoRA+: LoRA's B matrices train at learning_rate times this."})

    def __post_init__(self) -> None:
        for name in ("embedding_learning_rate", "loraplus_lr_ratio"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or
                                      not value > 0):
                raise UsageError(f"UnslothTrainingArguments({name}={value!r}): give a positive number, or None.")
        super().__post_init__()


trl_keywords.wrap_config(UnslothTrainingArguments)


def embedding_parameters(model: Any) -> set[int]:
    """ids of the trainable parameters of the input embedding and the LM head: peft's `modules_to_save` copies,
    or the model's own weights when they train (full fine-tuning)."""
    ids = set()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        parts = name.split(".")
        if "modules_to_save" in parts and parts[parts.index("modules_to_save") - 1] in EMBEDDING_MODULES:
            ids.add(id(param))
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        module = getattr(model, getter, lambda: None)()
        weight = getattr(module, "weight", None)
        if weight is not None and weight.requires_grad:
            ids.add(id(weight))
    return ids


def parameter_groups(model: Any, lr: float, weight_decay: float, decay: set[str],
                     embedding_lr: float | None = None, loraplus_ratio: float | None = None) -> list[dict[str, Any]]:
    """The optimizer's groups: (rest, LoRA B under LoRA+, embeddings) x (decayed, not), empty ones left out, each
    parameter once (a tied LM head shares the embedding's)."""
    embeddings = embedding_parameters(model) if embedding_lr is not None else set()
    groups: dict[tuple[float, float], list[Any]] = {}
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        if id(param) in embeddings:
            rate = embedding_lr
        elif loraplus_ratio is not None and ".lora_B." in name:
            rate = lr * loraplus_ratio
        else:
            rate = lr
        groups.setdefault((rate, weight_decay if name in decay else 0.0), []).append(param)
    return [{"params": params, "lr": rate, "weight_decay": wd} for (rate, wd), params in groups.items()]


class UnslothTrainer(SFTTrainer):
    """TRL's SFTTrainer whose optimizer gives the embeddings `args.embedding_learning_rate` (and LoRA's B matrices
    `args.loraplus_lr_ratio` times the learning rate) when the arguments carry them."""

    def create_optimizer(self, model: Any = None) -> Any:
        embedding_lr = getattr(self.args, "embedding_learning_rate", None)
        ratio = getattr(self.args, "loraplus_lr_ratio", None)
        if self.optimizer is not None or (embedding_lr is None and ratio is None):
            return super().create_optimizer(model) if model is not None else super().create_optimizer()
        target = model if model is not None else self.model
        if embedding_lr is not None and not embedding_parameters(target):
            raise UsageError("embedding_learning_rate is set but neither the input embedding nor the LM head trains: "
                             "add 'embed_tokens' and 'lm_head' to get_peft_model's target_modules (or "
                             "modules_to_save), or drop embedding_learning_rate.")
        if ratio is not None and not any(".lora_B." in n for n, p in target.named_parameters() if p.requires_grad):
            raise UsageError("loraplus_lr_ratio is set but the model has no trainable LoRA B matrix: attach a LoRA "
                             "with get_peft_model, or drop loraplus_lr_ratio.")
        optimizer_class, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, target)
        groups = parameter_groups(target, optimizer_kwargs.pop("lr", self.args.learning_rate),
                                  optimizer_kwargs.pop("weight_decay", self.args.weight_decay),
                                  set(self.get_decay_parameter_names(target)), embedding_lr, ratio)
        if embedding_lr is not None:
            print(f"attnpick: embed_tokens / lm_head train at lr {embedding_lr:.2e} (the rest at "
                  f"{self.args.learning_rate:.2e})", file=sys.stderr)
        self.optimizer = optimizer_class(groups, **optimizer_kwargs)
        return self.optimizer
