"""Models before loading: a name becomes a folder (tiny-exaone, a random-weight timing model, a local folder,
or a hub id in the local cache), its config.json decides the architecture path (native class, EXAONE ->
Llama mapping, or repository code), and the machine decides the torch device. No weights are read and no
repository code runs here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from attnpick import settings
from attnpick.decide.facts import EnvFacts, ModelFacts
from attnpick.errors import UsageError
from attnpick.model import exaone, gguf_import, tiny
from attnpick.model.config import check_model_files, model_facts, read_config

Architecture = Literal["native", "llama_mapping", "remote_code"]
FoundIn = Literal["tiny", "random", "local", "gguf", "hub"]
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
MAX_SEQ_LENGTH_LIMIT = 1 << 20  # the longest max_seq_length attnpick accepts: a typo, not a model, beyond it
DEFAULT_MAX_SEQ_LENGTH = 2048  # load's default, as Unsloth's from_pretrained
MODEL_HELP = (f"{tiny.NAME} (default), a local folder laid out like the hub, a .gguf file (read once into a cached "
              "folder) or a hub id in the local cache")
_DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}


def resolve(name: str, trust_remote_code: bool = False, token: str | None = None,
            revision: str | None = None) -> tuple[Path, FoundIn]:
    """(folder, where it was found) for `tiny-exaone`, a random-weight timing model, a local folder, a `.gguf` file
    (its cached transformers folder, `gguf_import`), or a hub id already in the local hub cache (or downloadable,
    when the hub is reachable). `HF_HUB_OFFLINE=1` is respected."""
    if name == tiny.NAME:
        return tiny.ensure(), "tiny"
    if name in tiny.RANDOM_MODELS:
        return tiny.ensure_random(name), "random"
    path = Path(name).expanduser()
    if path.is_dir():
        return path, "local"
    if gguf_import.is_gguf(path):
        return gguf_import.model_folder(path), "gguf"
    if path.exists():
        raise UsageError(f"Model {name!r} is a file, not a folder. Pass the folder that holds config.json (or a "
                         ".gguf file).")
    if HUB_ID.match(name) and not name.startswith("."):
        from huggingface_hub import snapshot_download  # only for hub ids

        patterns = HUB_FILES + (["*.py"] if trust_remote_code else [])
        try:
            return Path(snapshot_download(name, allow_patterns=patterns, token=token, revision=revision)), "hub"
        except Exception as exc:  # noqa: BLE001 - offline, unknown repo, network: one message
            raise UsageError(
                f"Model {name!r} is neither a local folder nor in the local hub cache ({type(exc).__name__}). "
                "Download it first (hf download NAME) on a connected machine, or pass a local folder."
            ) from None
    raise UsageError(f"Model {name!r} does not exist. Pass a local folder, a hub id (org/name) or {tiny.NAME}.")


def architecture(config: dict[str, Any], trust_remote_code: bool, force_llama_mapping: bool = False,
                 where: str = "model") -> Architecture:
    """How to build the model class: transformers' own class, attnpick's EXAONE -> Llama mapping, or the
    repository's code (only with trust_remote_code=True, and only when no native path exists)."""
    from transformers import __version__ as tf_version  # the installed release decides what is native
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = config.get("model_type")
    if force_llama_mapping:
        if not exaone.is_exaone(config):
            raise UsageError(f"{where}: the Llama mapping is for EXAONE 3.x (model_type 'exaone'), "
                             f"not {model_type!r}. Drop --exaone-as-llama.")
        return "llama_mapping"
    if model_type in CONFIG_MAPPING_NAMES:
        return "native"
    if exaone.is_exaone(config):
        return "llama_mapping"
    if isinstance(config.get("auto_map"), dict):
        if trust_remote_code:
            return "remote_code"
        raise UsageError(f"{where}: model_type {model_type!r} needs the repository's own Python code, which "
                         "attnpick runs only when asked. If you trust it, pass --trust-remote-code.")
    raise UsageError(f"{where}: model_type {model_type!r} is unknown to transformers {tf_version}. "
                     "Upgrade transformers (pip install -U transformers).")


@dataclass(frozen=True)
class Prepared:
    """A model resolved to a folder, with the architecture path and attention facts decided."""

    name: str
    folder: Path
    found_in: FoundIn
    architecture: Architecture
    model_facts: ModelFacts

    @property
    def load_folder(self) -> Path:
        """The folder transformers loads: the converted Llama copy for the EXAONE mapping."""
        return exaone.converted_folder(self.folder) if self.architecture == "llama_mapping" else self.folder

    @property
    def random_weights(self) -> bool:
        return self.found_in == "random"

    def load_arguments(self) -> dict[str, Any]:
        """`load_model` keywords that prepare this same model again (in a child process): the resolved folder (a hub
        snapshot needs no token or revision any more), the architecture path as decided here."""
        return {"model_name": self.name if self.found_in in ("tiny", "random") else str(self.folder),
                "trust_remote_code": self.architecture == "remote_code",
                "force_llama_mapping": self.architecture == "llama_mapping"}


def as_prepared(model: str | Prepared) -> Prepared:
    """A model name prepared with the defaults, or a model the caller prepared already (with its own flags)."""
    return model if isinstance(model, Prepared) else prepare(model)


def prepare(model_name: str, trust_remote_code: bool = False, force_llama_mapping: bool = False,
            token: str | None = None, revision: str | None = None) -> Prepared:
    """Resolve a model name, read its config.json and decide how to build it; reads no weights, runs no code."""
    folder, found_in = resolve(model_name, trust_remote_code, token, revision)
    config = read_config(folder)
    arch = architecture(config, trust_remote_code, force_llama_mapping, where=model_name)
    if found_in != "random":  # random-weight timing models have no weights by design
        check_model_files(folder)
    return Prepared(model_name, folder, found_in, arch, model_facts(config, folder=str(folder)))


def dtype_name(dtype: Any) -> str | None:
    """Accept None, a torch.dtype or a name ("bf16", "bfloat16", "torch.float16")."""
    if dtype is None:
        return None
    text = str(dtype).removeprefix("torch.")
    return _DTYPE_ALIASES.get(text, text)


def torch_device(facts: EnvFacts, local_rank: int | None = None) -> str:
    """The torch device attnpick puts a model on: this process's GPU (`cuda:LOCAL_RANK` under torchrun or accelerate
    launch, where every rank has its own; else the first), Apple's MPS, or the CPU. Every rank on `cuda:0` would make
    the Trainer take the model for a model-parallel one, and accelerate refuses a 4-bit model on another device."""
    index = settings.local_rank() if local_rank is None else local_rank
    return {"cuda": f"cuda:{index}", "rocm": f"cuda:{index}", "xpu": f"xpu:{index}", "mps": "mps"}.get(
        facts.device.type, "cpu")


def device_map(facts: EnvFacts) -> dict[str, str] | None:
    """`device_map` for `from_pretrained`: the whole model on `torch_device`, or None on CPU (the default)."""
    device = torch_device(facts)
    return None if device == "cpu" else {"": device}


def linear_module_names(model: Any) -> set[str]:
    """The last name part of every linear layer (q_proj, down_proj, ...): what LoRA's `target_modules` can name."""
    names = set()
    for full_name, module in model.named_modules():
        if "Linear" in type(module).__name__ and full_name:
            names.add(full_name.rsplit(".", 1)[-1])
    return names


def linear_layer_names(prepared: Prepared) -> set[str] | None:
    """The names LoRA's `target_modules` can use (q_proj, down_proj, ...), read off a weightless copy of the model
    built on the meta device from its config; None for repository code, which is not run just to look."""
    if prepared.architecture == "remote_code":
        return None
    import torch  # heavy: only when a LoRA is about to be attached
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    config = read_config(prepared.folder)
    if prepared.architecture == "llama_mapping":
        mapped = exaone.llama_config(config)
        hf_config = LlamaConfig(**{k: v for k, v in mapped.items() if k not in ("architectures", "model_type")})
    else:
        hf_config = AutoConfig.from_pretrained(str(prepared.folder), trust_remote_code=False)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config)
    return linear_module_names(model)
