"""attnpick: pick the fastest attention backend that really works here, prove it, load and fine-tune.

`import attnpick` is cheap: it imports neither torch nor transformers. Names are resolved on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "collect_facts": "attnpick.decide.probe",
    "choose": "attnpick.decide.decision",
    "Request": "attnpick.decide.decision",
    "Decision": "attnpick.decide.decision",
    "EnvFacts": "attnpick.decide.facts",
    "ModelFacts": "attnpick.decide.facts",
    "CATALOG": "attnpick.backends.registry",
    "load_model": "attnpick.loading",
    "FastLanguageModel": "attnpick.compat.fast_language_model",
    "FastModel": "attnpick.compat.fast_language_model",
    "UnslothTrainer": "attnpick.compat.unsloth_trainer",
    "UnslothTrainingArguments": "attnpick.compat.unsloth_trainer",
    "PatchDPOTrainer": "attnpick.compat.trl_keywords",
    "get_chat_template": "attnpick.compat.chat_templates",
    "train_on_responses_only": "attnpick.compat.chat_templates",
    "standardize_sharegpt": "attnpick.compat.dataset_formats",
    "standardize_data_formats": "attnpick.compat.dataset_formats",
    "to_sharegpt": "attnpick.compat.dataset_formats",
    "apply_chat_template": "attnpick.compat.dataset_formats",
    "is_bfloat16_supported": "attnpick.compat.precision",
    "is_bf16_supported": "attnpick.compat.precision",
    "LoadReport": "attnpick.load.chain",
    "register_xformers": "attnpick.backends.xformers",
    "verify": "attnpick.measure.parity",
    "VerifyReport": "attnpick.measure.parity",
    "bench": "attnpick.measure.bench",
    "BenchReport": "attnpick.measure.bench",
    "train": "attnpick.training",
    "TrainConfig": "attnpick.training",
    "TrainReport": "attnpick.training",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'attnpick' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # resolved once; a submodule of the same name can no longer shadow it
    return value
