"""`FastLanguageModel`: Unsloth's API over attnpick's proven chain, so the guide's code changes only its import.

    from attnpick import FastLanguageModel  # was: from unsloth import FastLanguageModel

`from_pretrained` takes Unsloth's parameter names and defaults (unsloth 2026.10, `models/loader.py`) and returns
`(model, tokenizer)` loaded through `load_model`: Unsloth first when it is eligible and proves itself, then
FlashAttention, xFormers, SDPA, eager. `get_peft_model`, `for_inference` and `for_training` are Unsloth's own when
Unsloth is the backend, and peft / transformers otherwise. The load report hangs on the model
(`model.attnpick_report`) and a two-line banner on stderr names the backend, its proof and what was ruled out.

Unsloth-only keywords: those that only tune Unsloth's own machinery are accepted and ignored, with one warning
naming them; those whose absence would change the result (8-bit or fp8 loading, vLLM, QAT, rope scaling, a
vocabulary resize, a device placement attnpick does not do) are refused with a `UsageError` that says so.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import types
import warnings
from collections.abc import Mapping
from typing import Any

from attnpick import settings
from attnpick.backends.registry import loader_api
from attnpick.compat import trl_keywords
from attnpick.errors import UsageError
from attnpick.export import adapters, gguf_file, hub, merged
from attnpick.load import lora
from attnpick.load.chain import LoadReport
from attnpick.load.quantization import keep_trainable
from attnpick.model.options import check_max_seq_length
from attnpick.model.resolve import DEFAULT_MAX_SEQ_LENGTH
from attnpick.util.options import finite, flag, whole

# As Unsloth patches TRL on import: SFTTrainer / SFTConfig take Unsloth's keywords from here on
# (attnpick.compat.trl_keywords).
trl_keywords.install()

REPORT_ATTR = "attnpick_report"
TOKENIZER_ATTR = "_attnpick_tokenizer"
LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Placements that, on one device, all mean "the whole model on the machine's device" (what attnpick does).
ONE_DEVICE_MAPS = {None, "sequential", "auto", "balanced"}


class FastLanguageModel:
    """Unsloth's `FastLanguageModel`, backed by attnpick's proven choice of attention backend."""

    @staticmethod
    def from_pretrained(
        model_name: str = "unsloth/Llama-3.2-1B-Instruct",
        max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
        dtype: Any = None,
        load_in_4bit: bool = True,
        load_in_8bit: bool = False,
        load_in_16bit: bool = False,
        full_finetuning: bool = False,
        token: str | None = None,
        device_map: Any = "sequential",
        rope_scaling: Any = None,
        fix_tokenizer: bool = True,
        trust_remote_code: bool = False,
        use_gradient_checkpointing: Any = "unsloth",
        resize_model_vocab: int | None = None,
        revision: str | None = None,
        *args: Any,
        backend: str | None = None,
        **kwargs: Any,
    ) -> tuple[Any, Any]:
        """Load `model_name` with the fastest attention backend proven to work here.

        Args:
            model_name: `tiny-exaone`, a local folder laid out like the hub, or a hub id (in the local cache, or
                downloadable).
            max_seq_length, dtype, load_in_4bit, token, revision, trust_remote_code: as in Unsloth.
            load_in_16bit, full_finetuning: no quantization (as in Unsloth).
            use_gradient_checkpointing: remembered as `get_peft_model`'s default.
            backend: attnpick's extra: "auto" (default; or $ATTNPICK_BACKEND) or one backend name.
            **kwargs: Unsloth's other keywords (see the module docstring); `attn_implementation` acts as
                `backend`.

        Returns:
            (model, tokenizer); the load report is `model.attnpick_report`.

        Example:
            >>> from attnpick import FastLanguageModel
            >>> model, tokenizer = FastLanguageModel.from_pretrained("tiny-exaone", max_seq_length=256,
            ...                                                      dtype=None, load_in_4bit=True)
        """
        if args:
            raise UsageError(f"FastLanguageModel.from_pretrained takes keyword arguments after revision; got "
                             f"{len(args)} more positional value(s).")
        if isinstance(model_name, os.PathLike):
            model_name = os.fspath(model_name)
        if not isinstance(model_name, str) or not model_name.strip():
            raise UsageError(f"model_name must be a model id or folder, e.g. 'tiny-exaone', got {model_name!r}.")
        check_max_seq_length(max_seq_length, "max_seq_length")
        for value, name in ((load_in_4bit, "load_in_4bit"), (load_in_8bit, "load_in_8bit"),
                            (load_in_16bit, "load_in_16bit"), (full_finetuning, "full_finetuning"),
                            (trust_remote_code, "trust_remote_code")):
            flag(value, name)
        if load_in_8bit:
            raise UsageError("load_in_8bit=True: attnpick loads 4-bit NF4 or unquantized; 8-bit would change the "
                             "model you train. Use load_in_4bit=True or load_in_16bit=True.")
        if rope_scaling is not None:
            raise UsageError("rope_scaling: attnpick loads the model's own RoPE settings; edit config.json to change "
                             "them.")
        if resize_model_vocab is not None:
            raise UsageError("resize_model_vocab: attnpick does not resize the vocabulary; call "
                             "model.resize_token_embeddings(n) after loading.")
        if device_map not in ONE_DEVICE_MAPS:
            raise UsageError(f"device_map={device_map!r}: attnpick places the whole model on this machine's device; "
                             "drop device_map (or use 'auto').")
        backend = backend or kwargs.pop("attn_implementation", None)
        _check_unsloth_keywords(kwargs)
        if load_in_16bit or full_finetuning:
            load_in_4bit = False
        # a saved LoRA folder (or a run folder of attnpick train): its base model, then the adapter
        model, tokenizer, report = adapters.load_trained(model_name, max_seq_length, load_in_4bit, dtype=dtype,
                                                         trust_remote_code=trust_remote_code, backend=backend,
                                                         token=token, revision=revision)
        _remember(model, tokenizer, report, use_gradient_checkpointing)
        _banner(report)
        return model, tokenizer

    @staticmethod
    def get_peft_model(
        model: Any,
        r: int = 16,
        target_modules: Any = None,
        lora_alpha: int = 16,
        lora_dropout: float = 0.0,
        bias: str = "none",
        layers_to_transform: Any = None,
        layers_pattern: Any = None,
        finetune_last_n_layers: int | None = None,
        use_gradient_checkpointing: Any = "unsloth",
        random_state: int = 3407,
        max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
        use_rslora: bool = False,
        modules_to_save: Any = None,
        init_lora_weights: Any = True,
        loftq_config: Any = None,
        temporary_location: str = "_unsloth_temporary_saved_buffers",
        qat_scheme: Any = None,
        target_parameters: Any = None,
        ensure_weight_tying: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Attach a LoRA: Unsloth's own `get_peft_model` when Unsloth loaded the model, else peft (k-bit
        preparation for a 4-bit model, gradient checkpointing for True or "unsloth", LoRA weights drawn from
        `random_state`).

        Args:
            model: what `from_pretrained` returned.
            r, target_modules, lora_alpha, lora_dropout, bias, layers_to_transform, layers_pattern, use_rslora,
            modules_to_save, init_lora_weights, loftq_config: as in Unsloth (and peft's `LoraConfig`).
            finetune_last_n_layers: LoRA on the last n layers only.
            use_gradient_checkpointing: True or "unsloth" (transformers' non-reentrant checkpointing with peft;
                Unsloth's offloaded variant only with Unsloth), False.
            random_state: seed of the LoRA weights.

        Returns:
            The peft model (`model.attnpick_report` still answers).
        """
        report = _report_of(model)
        _check_lora_arguments(r, lora_alpha, lora_dropout, bias, random_state, target_modules)
        targets = LLAMA_PROJECTIONS if target_modules is None else target_modules
        loader = None
        if loader_api(report.chosen) is not None:  # a model loader (Unsloth) loaded the model: its own get_peft_model
            given = {"r": r, "target_modules": targets, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
                     "bias": bias, "layers_to_transform": layers_to_transform, "layers_pattern": layers_pattern,
                     "finetune_last_n_layers": finetune_last_n_layers,
                     "use_gradient_checkpointing": use_gradient_checkpointing, "random_state": random_state,
                     "max_seq_length": max_seq_length, "use_rslora": use_rslora, "modules_to_save": modules_to_save,
                     "init_lora_weights": init_lora_weights, "loftq_config": loftq_config,
                     "temporary_location": temporary_location, "qat_scheme": qat_scheme,
                     "target_parameters": target_parameters, "ensure_weight_tying": ensure_weight_tying}
            # Only what differs from the defaults: Unsloth's CPU mode (unsloth_zoo) takes fewer keywords.
            defaults = {name: p.default for name, p in inspect.signature(FastLanguageModel.get_peft_model)
                        .parameters.items()}
            loader = {k: v for k, v in given.items() if not (v is defaults.get(k) or v == defaults.get(k))} | kwargs
        else:
            if qat_scheme is not None or target_parameters is not None:
                raise UsageError("qat_scheme and target_parameters are Unsloth features; without Unsloth as the "
                                 "backend attnpick attaches a plain peft LoRA. Drop them, or load with "
                                 "backend='unsloth'.")
            _check_unsloth_keywords(kwargs, where="get_peft_model")
            targets, modules_to_save, moved = lora.embedding_targets(targets, modules_to_save)
            if moved:
                warnings.warn(f"get_peft_model: {', '.join(moved)} train as full modules (peft's modules_to_save), as "
                              "in Unsloth: a LoRA on them would not train them the way continued pretraining needs. "
                              "List them in modules_to_save to say so yourself.", UserWarning, stacklevel=2)
            if finetune_last_n_layers:
                layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
                layers_to_transform = list(range(max(0, layers - finetune_last_n_layers), layers))
        peft_model = lora.attach(
            model, report.chosen, loader, r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
            target_modules=targets, bias=bias, use_rslora=use_rslora, loftq_config=loftq_config, seed=random_state,
            gradient_checkpointing=use_gradient_checkpointing in (True, "unsloth"),
            layers_to_transform=layers_to_transform, layers_pattern=layers_pattern, modules_to_save=modules_to_save,
            init_lora_weights=init_lora_weights)
        adapters.record_base(peft_model, report.model)
        _remember(peft_model, getattr(model, TOKENIZER_ATTR, None), report, use_gradient_checkpointing)
        return peft_model

    @staticmethod
    def for_inference(model: Any) -> Any:
        """Ready for `generate`: eval mode, the KV cache on, gradient checkpointing off, left padding."""
        own = loader_api(_report_of(model).chosen)
        if own is not None:
            return own.for_inference(model)  # type: ignore[attr-defined]
        if lora.checkpointing(model):
            lora.set_checkpointing(model, False)
        model.eval()
        _set_use_cache(model, True)
        _tokenizer_side(model, "left")
        return model

    @staticmethod
    def for_training(model: Any, use_gradient_checkpointing: Any = None) -> Any:
        """Back to training: train mode, the KV cache off (a cache leaks across packed samples), gradient
        checkpointing as `get_peft_model` set it (or as given), right padding, 4-bit layers trainable."""
        own = loader_api(_report_of(model).chosen)
        if own is not None:
            return own.for_training(model, use_gradient_checkpointing=use_gradient_checkpointing)  # type: ignore
        if use_gradient_checkpointing is None:
            use_gradient_checkpointing = getattr(model, "_attnpick_checkpointing_default", False)
        if use_gradient_checkpointing in (True, "unsloth"):
            lora.set_checkpointing(model, True)
        model.train()
        _set_use_cache(model, False)
        _tokenizer_side(model, "right")
        keep_trainable(model)
        return model


class FastModel(FastLanguageModel):
    """Unsloth's `FastModel` for text models (Gemma 3 1B, Qwen 3, Llama, EXAONE, ...): `FastLanguageModel` with
    `get_peft_model`'s `finetune_*` switches choosing the LoRA targets. A model with a vision tower is refused: attnpick
    loads causal LMs, not image-text processors."""

    @staticmethod
    def from_pretrained(model_name: str = "unsloth/gemma-3-1b-it", max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
                        dtype: Any = None, load_in_4bit: bool = True, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """As `FastLanguageModel.from_pretrained`; Unsloth's FastModel-only keywords (`auto_model`,
        `return_logits`, `whisper_language`, ...) are ignored with one warning."""
        _refuse_vision(model_name, kwargs.get("token"), kwargs.get("revision"))
        return FastLanguageModel.from_pretrained(model_name, max_seq_length, dtype, load_in_4bit, *args, **kwargs)

    @staticmethod
    def get_peft_model(model: Any, r: int = 16, target_modules: Any = None, lora_alpha: int = 16,
                       lora_dropout: float = 0.0, bias: str = "none", finetune_vision_layers: bool = True,
                       finetune_language_layers: bool = True, finetune_attention_modules: bool = True,
                       finetune_mlp_modules: bool = True, **kwargs: Any) -> Any:
        """Unsloth's FastModel LoRA: without `target_modules`, the attention projections (when
        `finetune_attention_modules`) and the MLP projections (when `finetune_mlp_modules`) of the language layers;
        `finetune_vision_layers` has nothing to choose in a text model. Given `target_modules` win."""
        for value, name in ((finetune_vision_layers, "finetune_vision_layers"),
                            (finetune_language_layers, "finetune_language_layers"),
                            (finetune_attention_modules, "finetune_attention_modules"),
                            (finetune_mlp_modules, "finetune_mlp_modules")):
            flag(value, name)
        if target_modules is None:
            if not finetune_language_layers:
                raise UsageError("get_peft_model(finetune_language_layers=False): a text model has only language "
                                 "layers, so nothing would train. Leave it True.")
            target_modules = lora_targets(model, finetune_attention_modules, finetune_mlp_modules)
        return FastLanguageModel.get_peft_model(model, r=r, target_modules=target_modules, lora_alpha=lora_alpha,
                                                lora_dropout=lora_dropout, bias=bias, **kwargs)


ATTENTION_PARTS = ("attn", "attention")
MLP_PARTS = ("mlp", "feed_forward", "ffn")


def lora_targets(model: Any, attention: bool, mlp: bool) -> list[str]:
    """The names of the linear layers inside the model's attention blocks and/or MLP blocks (`q_proj`, ...,
    `down_proj`), read from the model itself."""
    import torch

    if not (attention or mlp):
        raise UsageError("get_peft_model: finetune_attention_modules and finetune_mlp_modules are both False, so "
                         "nothing would train. Leave one True, or pass target_modules.")
    wanted = (ATTENTION_PARTS if attention else ()) + (MLP_PARTS if mlp else ())
    names: list[str] = []
    for path, module in model.named_modules():
        parents = path.split(".")[:-1]
        if isinstance(module, torch.nn.Linear) and any(p in part for part in parents for p in wanted):
            leaf = path.rsplit(".", 1)[-1]
            if leaf not in names:
                names.append(leaf)
    if not names:
        raise UsageError("get_peft_model: no linear layer found inside the model's attention or MLP blocks; pass "
                         "target_modules= with the layer names.")
    return names


def _refuse_vision(model_name: Any, token: Any, revision: Any) -> None:
    """A vision-language model's config (`vision_config`) is refused in one line naming what is missing."""
    from attnpick.model.config import read_config
    from attnpick.model.resolve import resolve

    if not isinstance(model_name, str) or not model_name.strip():
        return  # from_pretrained names the problem
    base = adapters.locate(model_name).base or model_name
    folder, _ = resolve(base, token=token, revision=revision)
    config = read_config(folder)
    if "vision_config" in config or "vision_tower" in config:
        raise UsageError(f"{model_name} is a vision-language model ({config.get('model_type')}): attnpick's FastModel "
                         "loads text models only; it has no image processor or vision tower path. Use the text-only "
                         "sibling (e.g. gemma-3-1b-it), or Unsloth itself for vision fine-tuning.")


# Unsloth keywords that only tune Unsloth's own machinery (memory placement, its fast paths, its model-name
# remapping, vLLM settings that apply only with fast_inference): without Unsloth they change nothing that you train.
IGNORED_KEYWORDS = {
    "fix_tokenizer", "use_exact_model_name", "offload_embedding", "gpu_memory_utilization", "random_state",
    "max_lora_rank", "disable_log_stats", "unsloth_tiled_mlp", "text_only", "device_map_planner_kwargs",
    "on_model_resolved", "temporary_location", "ensure_weight_tying", "max_seq_length",
    # FastModel's: which transformers Auto class builds the model (attnpick's is the causal LM's), logits kept in
    # full, Whisper's language and task
    "auto_model", "return_logits", "whisper_language", "whisper_task", "unsloth_force_compile",
}
# Keywords whose effect attnpick cannot give: refused unless left at their default.
REFUSED_KEYWORDS = {
    "fast_inference": (False, "vLLM inference is Unsloth's; load with backend='unsloth' or drop fast_inference"),
    "float8_kv_cache": (False, "an fp8 KV cache needs vLLM (fast_inference)"),
    "load_in_fp8": (False, "attnpick loads 4-bit NF4 or unquantized, not fp8"),
    "qat_scheme": (None, "quantization-aware training is Unsloth's"),
    "float32_mixed_precision": (None, "attnpick computes in the dtype you pass; set dtype=torch.float32 instead"),
    "quantization_config": (None, "pass load_in_4bit=True (NF4, double quantization) instead of a config"),
}


def _check_unsloth_keywords(kwargs: dict[str, Any], where: str = "from_pretrained") -> None:
    """Refuse what would change the result; warn once about what is ignored."""
    for name, (default, why) in REFUSED_KEYWORDS.items():
        if name in kwargs and kwargs[name] is not default:
            raise UsageError(f"{where}({name}={kwargs[name]!r}): {why}.")
    ignored = sorted(name for name in kwargs if name not in REFUSED_KEYWORDS)
    if ignored:
        unknown = [n for n in ignored if n not in IGNORED_KEYWORDS]
        note = f" ({', '.join(unknown)} unknown to Unsloth 2026.10 too)" if unknown else ""
        warnings.warn(f"attnpick FastLanguageModel.{where} ignores {', '.join(ignored)}: they tune Unsloth's own "
                      f"machinery, which is not loaded here{note}.", UserWarning, stacklevel=3)


LORA_BIAS = ("none", "all", "lora_only")  # peft's LoraConfig.bias


def _check_lora_arguments(r: Any, lora_alpha: Any, lora_dropout: Any, bias: Any, random_state: Any,
                          target_modules: Any) -> None:
    """get_peft_model's arguments checked as the CLI checks options: a UsageError naming the argument, never a
    peft or torch internal."""
    whole(r, "r", 1)
    finite(lora_alpha, "lora_alpha", low=0.0, low_open=True)
    finite(lora_dropout, "lora_dropout", low=0.0, high=1.0)
    if bias not in LORA_BIAS:
        raise UsageError(f"bias must be one of {', '.join(LORA_BIAS)}, got {bias!r}.")
    whole(random_state, "random_state", 0, 2**32 - 1)
    if target_modules is not None and not (
            (isinstance(target_modules, str) and target_modules) or
            (isinstance(target_modules, (list, tuple, set)) and target_modules and
             all(isinstance(m, str) and m for m in target_modules))):
        raise UsageError(f"target_modules must be module names such as ['q_proj', 'v_proj'] (or 'all-linear'), got "
                         f"{target_modules!r}.")


def _remember(model: Any, tokenizer: Any, report: LoadReport, checkpointing: Any) -> None:
    """The load report, the tokenizer and Unsloth's saving methods on the model, as Unsloth's own models carry them."""
    setattr(model, REPORT_ATTR, report)
    setattr(model, TOKENIZER_ATTR, tokenizer)
    model._attnpick_checkpointing_default = checkpointing
    model.save_pretrained_merged = types.MethodType(_save_pretrained_merged, model)
    model.save_pretrained_gguf = types.MethodType(_save_pretrained_gguf, model)
    model.push_to_hub_merged = types.MethodType(_push_to_hub_merged, model)
    model.push_to_hub_gguf = types.MethodType(_push_to_hub_gguf, model)
    if not getattr(model.generate, MARK_GENERATE, False):
        model.generate = _generate_taking_encodings(model.generate)


MARK_GENERATE = "_attnpick_takes_encodings"


def _generate_taking_encodings(generate: Any) -> Any:
    """`generate` that also takes what transformers 5's `tokenizer.apply_chat_template(..., return_tensors="pt")`
    returns (a `BatchEncoding`, where transformers 4 returned the ids) as `input_ids`, positional or named, as the
    notebooks pass it: its `input_ids` and `attention_mask` are used. Anything else reaches `generate` unchanged."""
    def encoding(value: Any) -> bool:
        return isinstance(value, Mapping) and "input_ids" in value

    @functools.wraps(generate)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if args and encoding(args[0]):
            kwargs = {**dict(args[0]), **kwargs}
            args = args[1:]
        elif encoding(kwargs.get("input_ids")):
            given = dict(kwargs.pop("input_ids"))
            kwargs = {**given, **kwargs}
        return generate(*args, **kwargs)

    setattr(wrapped, MARK_GENERATE, True)
    return wrapped


def _tokenizer_for(model: Any, tokenizer: Any) -> Any:
    """The tokenizer a save call was given, else the one `from_pretrained` loaded with the model."""
    return tokenizer if tokenizer is not None else getattr(model, TOKENIZER_ATTR, None)


def _save_pretrained_merged(model: Any, save_directory: str, tokenizer: Any = None, save_method: str = "merged_16bit",
                            **ignored: Any) -> str:
    """Unsloth's `model.save_pretrained_merged`: see `attnpick.export.merged`."""
    report = _report_of(model)
    out = merged.save_merged(model, _tokenizer_for(model, tokenizer), save_directory, save_method,
                             source_folder=report.source_folder or None)
    return str(out)


def _save_pretrained_gguf(model: Any, save_directory: str, tokenizer: Any = None,
                          quantization_method: str | list[str] = "fast_quantized", quantization_type: Any = None,
                          **ignored: Any) -> list[str]:
    """Unsloth's `model.save_pretrained_gguf`: `<model>.<TYPE>.gguf` files and an Ollama `Modelfile` in
    `save_directory` (its text also `tokenizer._ollama_modelfile`); see `attnpick.export.gguf_file`.
    `quantization_type` is FastModel's name for `quantization_method` (`"Q8_0"`)."""
    if quantization_type is not None:
        quantization_method = quantization_type
    report = _report_of(model)
    written = gguf_file.save_gguf(model, _tokenizer_for(model, tokenizer), save_directory, quantization_method,
                                  source_folder=report.source_folder or None, name=report.model)
    return [str(path) for path in written]


def _push_to_hub_merged(model: Any, repo_id: str, tokenizer: Any = None, save_method: str = "merged_16bit",
                        token: str | None = None, private: bool | None = None, **ignored: Any) -> str:
    """Unsloth's `push_to_hub_merged`: see `attnpick.export.hub`."""
    return hub.push_folder(lambda folder: _save_pretrained_merged(model, folder, tokenizer, save_method), repo_id,
                           token=token, private=private)


def _push_to_hub_gguf(model: Any, repo_id: str, tokenizer: Any = None,
                      quantization_method: str | list[str] = "fast_quantized", token: str | None = None,
                      private: bool | None = None, **ignored: Any) -> str:
    """Unsloth's `push_to_hub_gguf`: the GGUF files of `save_pretrained_gguf`, uploaded."""
    def write(folder: str) -> str:
        _save_pretrained_gguf(model, folder, tokenizer, quantization_method)
        return folder

    return hub.push_folder(write, repo_id, token=token, private=private)


def _report_of(model: Any) -> LoadReport:
    report = getattr(model, REPORT_ATTR, None)
    if not isinstance(report, LoadReport):
        raise UsageError("This model was not loaded by attnpick's FastLanguageModel.from_pretrained; load it with "
                         "that first.")
    return report


def _set_use_cache(model: Any, value: bool) -> None:
    config = getattr(model, "config", None)
    if config is not None:
        config.use_cache = value


def _tokenizer_side(model: Any, side: str) -> None:
    tokenizer = getattr(model, TOKENIZER_ATTR, None)
    if tokenizer is not None:
        tokenizer.padding_side = side


def _banner(report: LoadReport) -> None:
    """Two lines on stderr, as Unsloth prints its own: the backend and its proof, and what was ruled out."""
    if settings.no_banner():
        return
    conf = report.confirmation
    ran = ", ".join(f"{name.rsplit('.', 1)[-1]} x{n}" for name, n in (conf.calls or conf.forwards).items()) \
        if conf else ""
    proof = f"smoke run passed, {ran} over {conf.layers} layers" if conf and conf.ok else "smoke run passed"
    if not report.loader_kernel and conf and conf.kernel_summary():
        proof = f"{conf.kernel_summary()}; {proof}"
    kernel = f" (Unsloth's kernel: {report.loader_kernel})" if report.loader_kernel else ""
    quant = "4-bit NF4" if report.quantization else "no quantization"
    ruled_out = "; ".join(f"{a.backend} [{a.reasons[0].code}]" for a in report.attempts
                          if a.outcome != "loaded" and a.reasons)
    print(f"attnpick: {report.model} -> {report.chosen}{kernel} ({proof}); {quant}, {report.dtype} on "
          f"{report.device}", file=sys.stderr)
    print(f"attnpick: ruled out: {ruled_out or 'none'}. Details: model.{REPORT_ATTR}", file=sys.stderr)
