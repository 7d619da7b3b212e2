"""attnpick: pick the fastest attention backend that really works here, prove it, load and fine-tune.

`import attnpick` is cheap: it imports neither torch nor transformers. Names are resolved on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "collect_facts": "attnpick.probe",
    "choose": "attnpick.decision",
    "Request": "attnpick.decision",
    "Decision": "attnpick.decision",
    "EnvFacts": "attnpick.facts",
    "ModelFacts": "attnpick.facts",
    "CATALOG": "attnpick.catalog",
    "load_model": "attnpick.loading",
    "FastLanguageModel": "attnpick.fast_language_model",
    "is_bfloat16_supported": "attnpick.precision",
    "is_bf16_supported": "attnpick.precision",
    "LoadReport": "attnpick.chain",
    "register_xformers": "attnpick.backends.xformers",
    "verify": "attnpick.parity",
    "VerifyReport": "attnpick.parity",
    "bench": "attnpick.benchmark",
    "BenchReport": "attnpick.benchmark",
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
