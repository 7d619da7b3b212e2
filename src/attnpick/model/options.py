"""`ModelOptions`: the model a command works on and how to read it, declared once for every command that takes a model
(`load`, `verify`, `bench`, `train`, `chat`, `export`; `doctor` and `plan` read only its config.json). Each command's
config inherits these fields, so the library's keywords, the CLI's options and their checks are the same
everywhere, and `prepare()` resolves the model once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from attnpick.errors import UsageError
from attnpick.model import tiny
from attnpick.model.resolve import MAX_SEQ_LENGTH_LIMIT, MODEL_HELP, Prepared, prepare
from attnpick.util.options import flag, option, whole

MIN_SEQ_LENGTH = 8  # the shortest max_seq_length attnpick takes: a chat turn's markers alone need a few tokens


@dataclass
class ModelOptions:
    """The model (positional, or `--model`) and the flags that say how to read it."""

    model: str = option(tiny.NAME, MODEL_HELP, positional=True)
    trust_remote_code: bool = option(False, "run the model repository's own Python code (only where transformers "
                                     "has no class for it)", action="store_true")
    exaone_as_llama: bool = option(False, "load EXAONE 3.x through attnpick's Llama mapping even where transformers "
                                   "has it natively", action="store_true")
    token: str | None = option(None, "Hugging Face token for a gated hub id not yet in the local cache (default: "
                               "HF_TOKEN or the saved login)", metavar="TOKEN")
    revision: str | None = option(None, "branch, tag or commit of a hub id", metavar="REV")

    def validate_model(self) -> None:
        """The model options' own checks, shared by every config's `validate()`."""
        if not isinstance(self.model, str) or not self.model.strip():
            raise UsageError(f"The model is empty: give {tiny.NAME}, a model folder or a hub id (positional, or "
                             "--model).")
        flag(self.trust_remote_code, "trust_remote_code (--trust-remote-code)")
        flag(self.exaone_as_llama, "exaone_as_llama (--exaone-as-llama)")
        for value, name in ((self.token, "--token"), (self.revision, "--revision")):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise UsageError(f"{name} is empty: give a value or leave the option out.")

    def prepare(self) -> Prepared:
        """The model resolved to a folder, its architecture path decided with these flags (no weights read)."""
        return prepare(self.model, self.trust_remote_code, self.exaone_as_llama, token=self.token,
                       revision=self.revision)

    def load_keywords(self) -> dict[str, Any]:
        """These flags as `load_model` keywords, for a base model found later (an adapter's or a run's)."""
        return {"trust_remote_code": self.trust_remote_code, "force_llama_mapping": self.exaone_as_llama,
                "token": self.token, "revision": self.revision}


def check_max_seq_length(value: Any, name: str = "--max-seq-length") -> None:
    """The one check of a context length, for every command and the Python API."""
    whole(value, name, MIN_SEQ_LENGTH, MAX_SEQ_LENGTH_LIMIT)
