"""LoRA on a model the chain loaded, the one way attnpick attaches it everywhere (`attnpick train`, `FastLanguageModel`,
parity and the train benchmark): `attach()` gives a model loader's own `get_peft_model` the model it built (Unsloth),
and otherwise peft (`attach_lora`: k-bit preparation for 4-bit models, optional gradient checkpointing, weights drawn
from a seeded generator).

peft 0.21 reads `model.is_gradient_checkpointing` and calls `gradient_checkpointing_enable`, which transformers
5.24 deprecated in favour of their `activation_checkpointing` names; the FutureWarnings that follow say nothing
to the user and are silenced here, and only here.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from attnpick.backends.registry import loader_api
from attnpick.errors import UsageError
from attnpick.model.resolve import linear_module_names

# attach_lora's keywords under their names in a loader's FastLanguageModel-shaped API
_LOADER_NAMES = {"seed": "random_state", "gradient_checkpointing": "use_gradient_checkpointing"}


def base_model(model: Any) -> Any:
    """The transformers model under a peft wrapper (the model itself when it is not wrapped)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def check_target_modules(available: set[str], wanted: Sequence[str]) -> None:
    """`UsageError` naming the unknown names and the model's own, before any LoRA is attached."""
    unknown = [name for name in wanted if name not in available and name != "all-linear"]
    if unknown:
        raise UsageError(f"--target-modules {','.join(unknown)}: no such layer in this model. Its linear layers are: "
                         f"{', '.join(sorted(available))}.")


def attach_lora(model: Any, *, r: int, lora_alpha: int, lora_dropout: float, target_modules: Sequence[str] | str,
                bias: str = "none", use_rslora: bool = False, loftq_config: Any = None, seed: int | None = None,
                gradient_checkpointing: bool = False, layers_to_transform: Any = None, layers_pattern: Any = None,
                modules_to_save: Any = None, init_lora_weights: Any = True) -> Any:
    """`model` wrapped in a peft LoRA; a 4-bit model is prepared for k-bit training first. Where the model ties
    its LM head to its input embedding and `modules_to_save` trains either, peft keeps the trained copies tied
    (`ensure_weight_tying`), so the head still reads the embedding it was trained with.

    Args:
        model: a transformers causal LM (4-bit or not).
        r, lora_alpha, lora_dropout, bias, use_rslora, loftq_config, layers_to_transform, layers_pattern,
        modules_to_save, init_lora_weights: as in `peft.LoraConfig`.
        target_modules: module names (or "all-linear").
        seed: draws the LoRA weights from `torch.manual_seed(seed)` when given.
        gradient_checkpointing: recompute activations in the backward pass (less memory, more time).
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training  # heavy: a model is loaded

    with _quiet_renames():
        if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                    gradient_checkpointing_kwargs={"use_reentrant": False})
        elif gradient_checkpointing:
            set_checkpointing(model, True)
            model.enable_input_require_grads()
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    config = LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=targets, bias=bias,
                        use_rslora=use_rslora, loftq_config=loftq_config or {}, layers_to_transform=layers_to_transform,
                        layers_pattern=layers_pattern, modules_to_save=modules_to_save,
                        init_lora_weights=init_lora_weights, task_type="CAUSAL_LM",
                        **({"ensure_weight_tying": True} if _ties_saved_embeddings(model, modules_to_save) else {}))
    if seed is not None:
        import torch

        torch.manual_seed(seed)
    with _quiet_renames():
        try:
            return get_peft_model(model, config)
        except ValueError as exc:
            if "not found in the base model" in str(exc):
                check_target_modules(linear_module_names(model), targets if isinstance(targets, list) else [targets])
            raise



EMBEDDING_MODULES = ("embed_tokens", "lm_head")


def embedding_targets(target_modules: Any, modules_to_save: Any) -> tuple[Any, list[str] | None, list[str]]:
    """Unsloth's reading of `target_modules` holding `embed_tokens` / `lm_head`: those train as full modules
    (peft's `modules_to_save`; a LoRA on them would not train the way continued pretraining needs). Returns the
    LoRA targets left, `modules_to_save`, and what was moved."""
    saved = list(modules_to_save) if isinstance(modules_to_save, (list, tuple, set)) else (
        [modules_to_save] if isinstance(modules_to_save, str) else None)
    if isinstance(target_modules, str) or target_modules is None:
        return target_modules, saved, []
    moved = [m for m in target_modules if m.rsplit(".", 1)[-1] in EMBEDDING_MODULES]
    if not moved:
        return target_modules, saved, []
    left = [m for m in target_modules if m not in moved]
    if not left:
        raise UsageError("target_modules holds only embed_tokens / lm_head, which train as full modules: add the "
                         "LoRA targets too (e.g. 'q_proj', 'v_proj').")
    saved = list(dict.fromkeys([*(saved or []), *moved]))
    return left, saved, moved


def _ties_saved_embeddings(model: Any, modules_to_save: Any) -> bool:
    config = getattr(model, "config", None)
    tied = bool(getattr(config, "tie_word_embeddings", False) or
                getattr(getattr(config, "get_text_config", lambda: None)(), "tie_word_embeddings", False))
    names = [modules_to_save] if isinstance(modules_to_save, str) else list(modules_to_save or [])
    return tied and any(str(n).rsplit(".", 1)[-1] in EMBEDDING_MODULES for n in names)


def attach(model: Any, backend: str, loader: dict[str, Any] | None = None, **options: Any) -> Any:
    """LoRA on `model`, which the chain loaded with `backend`: the loader's own `get_peft_model` when a model loader
    (Unsloth) built it, with `loader` as its keywords when given (its own names, its own extras), else `options` in its
    names (`seed` as `random_state`); otherwise peft through `attach_lora(model, **options)`."""
    own = loader_api(backend)
    if own is None:
        return attach_lora(model, **options)
    keywords = loader if loader is not None else {_LOADER_NAMES.get(k, k): v for k, v in options.items()}
    return own.get_peft_model(model, **keywords)  # type: ignore[attr-defined]


@contextmanager
def _quiet_renames() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(is_gradient_checkpointing|gradient_checkpointing_enable|"
                                r"gradient_checkpointing_disable).*deprecated", category=FutureWarning)
        yield


def checkpointing(model: Any) -> bool:
    """Whether activation (gradient) checkpointing is on, under either of transformers' names."""
    with _quiet_renames():
        return bool(getattr(model, "is_activation_checkpointing", None)
                    or getattr(model, "is_gradient_checkpointing", False))


def set_checkpointing(model: Any, on: bool) -> None:
    """Turn activation checkpointing on (non-reentrant) or off: transformers >= 5.24's names where they exist."""
    new = hasattr(model, "activation_checkpointing_enable")
    with _quiet_renames():
        if on and new:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        elif on:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        elif new:
            model.activation_checkpointing_disable()
        else:
            model.gradient_checkpointing_disable()
