"""A merged model as a GGUF file for llama.cpp (and Ollama, LM Studio, ... that run it).

Written with llama.cpp's own Python package `gguf`: its writer, its tensor-name map, its quantizer for q8_0 and
its special-vocabulary reader (merges, bos/eos/pad ids). The weights are the ones `merged.merged_state_dict`
gives (every 4-bit weight dequantized, every LoRA merged), in float32 before they are written. Architectures:
EXAONE 3.x (`exaone`: an EXAONE model loaded through attnpick's Llama mapping is written as EXAONE) and Llama /
Mistral (`llama`, the query/key rows reordered for llama.cpp's rotary layout as llama.cpp's converter does).
Tokenizers: byte-level BPE with a pre-tokenizer llama.cpp knows (EXAONE, GPT-2, Llama 3, Qwen 2); the chat
template goes into the metadata.

Types: `f32`, `f16`, `bf16` and `q8_0` are written here (q8_0 blocks of 32 along each row; a tensor whose rows
are not a multiple of 32, and every 1-D tensor, stays in 16/32-bit as llama.cpp's converter keeps it).
k-quants (`q4_k_m`, `q5_k_m`, ...) and the other llama.cpp types go through llama.cpp's quantizer from the f16
file, which needs `llama-cpp-python`; without it the f16 file is kept and one error names the install.
Each file appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnpick.errors import UsageError
from attnpick.export import modelfile
from attnpick.export.merged import Progress, merged_state_dict, original_config
from attnpick.model import exaone
from attnpick.util import files

WRITTEN_HERE = ("f32", "f16", "bf16", "q8_0")
BY_LLAMA_CPP = ("q4_k_m", "q5_k_m", "q4_k_s", "q5_k_s", "q6_k", "q3_k_m", "q3_k_s", "q3_k_l", "q2_k",
                "q4_0", "q4_1", "q5_0", "q5_1")
ALIASES = {  # Unsloth's names for its three recommended choices, and its short k-quant names
    "not_quantized": "f16", "fast_quantized": "q8_0", "quantized": "q4_k_m", "q4_k": "q4_k_m", "q5_k": "q5_k_m",
}
DEFAULT = "q8_0"
LLAMA_CPP_INSTALL = "pip install llama-cpp-python (it builds llama.cpp from source: about 10 minutes)"

# llama.cpp's pre-tokenizer names, by the regular expressions a tokenizer.json splits text with before BPE.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = _LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")  # digits one by one
PRE_TOKENIZERS = {
    ("bytelevel",): "gpt-2",
    ("digits", "bytelevel"): "exaone",  # EXAONE 3.x: every digit alone, then GPT-2's split
    ("split:" + _LLAMA3_SPLIT, "bytelevel-noregex"): "llama-bpe",
    ("split:" + _QWEN2_SPLIT, "bytelevel-noregex"): "qwen2",
}


@dataclass(frozen=True)
class GGUFArchitecture:
    gguf_arch: str  # the `gguf.MODEL_ARCH` member's name
    reorder_qk: bool  # llama.cpp's rotary layout differs from the checkpoint's (Llama's "undo permute")


ARCHITECTURES = {
    "exaone": GGUFArchitecture("EXAONE", reorder_qk=False),
    "llama": GGUFArchitecture("LLAMA", reorder_qk=True),
    "mistral": GGUFArchitecture("LLAMA", reorder_qk=True),
}


def quantization_methods(quantization_method: str | Iterable[str] | None) -> list[str]:
    """The asked types, lower-cased, aliases resolved, each known; f16 first where a k-quant needs it."""
    asked = [quantization_method or DEFAULT] if isinstance(quantization_method, (str, type(None))) else \
        list(quantization_method)
    methods: list[str] = []
    for raw in asked:
        method = ALIASES.get(str(raw).lower(), str(raw).lower())
        if method not in WRITTEN_HERE + BY_LLAMA_CPP:
            raise UsageError(f"Unknown quantization_method {raw!r}. Choose one of: "
                             f"{', '.join(WRITTEN_HERE + BY_LLAMA_CPP)} (or {', '.join(ALIASES)}).")
        if method not in methods:
            methods.append(method)
    if any(m in BY_LLAMA_CPP for m in methods) and "f16" not in methods:
        methods.insert(0, "f16")  # llama.cpp's quantizer starts from the 16-bit file, which is kept
    return methods


def file_name(stem: str, method: str) -> str:
    return f"{stem}.{method.upper()}.gguf"


def save_gguf(model: Any, tokenizer: Any, out: str | Path, quantization_method: str | Iterable[str] | None = DEFAULT,
              source_folder: str | None = None, name: str | None = None,
              progress: Progress | None = None) -> list[Path]:
    """Write `model` (merged first when it carries LoRA adapters) into the folder `out` once per asked type, as
    `<name>.<TYPE>.gguf` (`name`: the model id it was loaded by, its last part), and an Ollama `Modelfile` for
    the first of them (`attnpick.export.modelfile`); returns the GGUF files. An existing file of the same name is
    replaced whole."""
    methods = quantization_methods(quantization_method)
    if tokenizer is None:
        raise UsageError("save_pretrained_gguf needs the tokenizer: pass it, e.g. "
                         "model.save_pretrained_gguf(dir, tokenizer).")
    original, _ = original_config(model, source_folder)
    arch = _architecture(original)
    hyper = _hyper(original)  # every refusal before the merge, the costly part
    vocab = _vocab(tokenizer, _vocab_size(original, tokenizer))
    folder = Path(out).expanduser()
    files.check_writable(folder, "save_directory")
    stem = _stem(name or original.get("_name_or_path") or source_folder or "")
    state = merged_state_dict(model, "float32", progress)
    written: list[Path] = []
    for method in methods:
        path = folder / file_name(stem, method)
        if method in WRITTEN_HERE:
            _write(path, method, state, hyper, arch, vocab, stem, progress or (lambda *_: None))
        else:
            with files.disk_full_as_error(folder, path.name):
                _quantize_with_llama_cpp(folder / file_name(stem, "f16"), path, method)
        written.append(path)
    # Ollama's model is the file asked for: the k-quant where llama.cpp made one from the f16 file
    primary = next((path for path, method in zip(written, methods, strict=True) if method in BY_LLAMA_CPP),
                   written[0])
    with files.disk_full_as_error(folder, "the Modelfile"):
        modelfile.write(folder, primary.name, tokenizer)
    return written


def _architecture(config: dict[str, Any]) -> GGUFArchitecture:
    kind = "exaone" if exaone.is_exaone(config) else config.get("model_type")
    if kind not in ARCHITECTURES:
        raise UsageError(f"GGUF export knows {', '.join(ARCHITECTURES)} models; this one is {kind!r}. Save it with "
                         "save_method='merged_16bit' and convert that folder with llama.cpp's convert_hf_to_gguf.py.")
    return ARCHITECTURES[kind]


def _vocab_size(config: dict[str, Any], tokenizer: Any) -> int:
    return int(config.get("vocab_size") or len(tokenizer))


def _stem(name: str) -> str:
    """The file name's model part: the id's last piece (`LGAI-EXAONE/EXAONE-3.5-2.4B-Instruct` -> its name); a model
    given as a GGUF file loses the suffix (`SmolLM2-135M-Instruct.Q4_1.gguf` -> `SmolLM2-135M-Instruct.Q4_1`)."""
    stem = re.split(r"[\\/]", str(name).rstrip("\\/"))[-1] if name else ""
    stem = re.sub(r"\.gguf$", "", stem, flags=re.IGNORECASE)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-") or "model"


@dataclass(frozen=True)
class _Vocab:
    tokens: list[str]
    types: list[int]
    pre: str
    special: Any  # gguf's SpecialVocab: merges, special token ids, the chat template


def _vocab(tokenizer: Any, vocab_size: int) -> _Vocab:
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UsageError("GGUF export needs a fast (tokenizer.json) tokenizer; this one is "
                         f"{type(tokenizer).__name__}. Load the model's tokenizer with use_fast=True.")
    pipeline = json.loads(backend.to_str())
    model = pipeline.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or (pipeline.get("decoder") or {}).get("type") != \
            "ByteLevel":
        raise UsageError("GGUF export here writes byte-level BPE tokenizers (EXAONE, Llama 3, Qwen 2, GPT-2); this "
                         "one is not. Save with save_method='merged_16bit' and use llama.cpp's convert_hf_to_gguf.py.")
    shape = _pre_tokenizer_shape(pipeline.get("pre_tokenizer"))
    if shape not in PRE_TOKENIZERS:
        raise UsageError(f"llama.cpp has no pre-tokenizer matching this tokenizer's ({', '.join(shape) or 'none'}). "
                         "Save with save_method='merged_16bit' and use llama.cpp's convert_hf_to_gguf.py.")
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = {i: tok for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items()}
    tokens, types = [], []
    for i in range(max(vocab_size, len(by_id))):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    with tempfile.TemporaryDirectory() as tmp:  # SpecialVocab reads a tokenizer as saved
        tokenizer.save_pretrained(tmp)
        special = gguf.SpecialVocab(tmp, load_merges=True, n_vocab=len(tokens))
    special.chat_template = special.chat_template or getattr(tokenizer, "chat_template", None)
    return _Vocab(tokens, [int(t) for t in types], PRE_TOKENIZERS[shape], special)


def _pre_tokenizer_shape(pre: dict[str, Any] | None) -> tuple[str, ...]:
    if not pre:
        return ()
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    shape = []
    for step in steps or []:
        kind = step.get("type")
        pattern = (step.get("pattern") or {}).get("Regex") or (step.get("pattern") or {}).get("String")
        if kind == "ByteLevel":
            shape.append("bytelevel" if step.get("use_regex", True) else "bytelevel-noregex")
        elif (kind == "Digits" and step.get("individual_digits")) or (kind == "Split" and pattern == r"\p{N}"
                                                                        and step.get("behavior") == "Isolated"):
            shape.append("digits")
        elif kind == "Split" and step.get("behavior") == "Isolated":
            shape.append(f"split:{pattern}")
        else:
            shape.append(str(kind))
    return tuple(shape)


def _write(path: Path, method: str, state: dict[str, Any], hyper: dict[str, Any], arch: GGUFArchitecture,
           vocab: _Vocab, name: str, progress: Progress) -> None:
    import gguf

    partial = path.with_name(f".{path.name}.partial")
    writer = gguf.GGUFWriter(str(partial), gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, arch.gguf_arch)])
    with files.disk_full_as_error(path.parent, path.name):
        try:
            _metadata(writer, method, hyper, vocab, name)
            for done, (tensor, data, qtype) in enumerate(_tensors(state, hyper, arch, method), 1):
                progress(f"writing {path.name}", done, len(state))
                writer.add_tensor(tensor, data, raw_dtype=qtype)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
            writer.close()
            files.fsync_file(partial)
            os.replace(partial, path)
        finally:
            with contextlib.suppress(OSError):  # closing flushes: a full disk fails it again
                writer.close()
            partial.unlink(missing_ok=True)


FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0"}


def _hyper(config: dict[str, Any]) -> dict[str, Any]:
    """The numbers llama.cpp needs, under either EXAONE's or Llama's config keys; a rope scaling it cannot be
    told is refused."""
    get = lambda *keys, default=None: next((config[k] for k in keys if config.get(k) is not None), default)  # noqa: E731
    hidden, heads = get("hidden_size"), get("num_attention_heads")
    rope = dict(get("rope_parameters", "rope_scaling", default={}) or {})
    rope_type = str(rope.get("rope_type") or rope.get("type") or "default").lower()
    if rope_type not in ("default", "linear", "llama3"):  # llama3 is the rope_freqs tensor
        raise UsageError(f"GGUF export does not write rope_type {rope_type!r} yet; save with "
                         "save_method='merged_16bit' and use llama.cpp's convert_hf_to_gguf.py.")
    return {
        "layers": get("num_hidden_layers", "num_layers"), "hidden": hidden, "heads": heads,
        "kv_heads": get("num_key_value_heads", default=heads), "ffn": get("intermediate_size"),
        "head_dim": get("head_dim", default=hidden // heads), "context": get("max_position_embeddings", default=2048),
        "eps": get("rms_norm_eps", "layer_norm_epsilon", default=1e-5),
        "rope_theta": rope.get("rope_theta") or get("rope_theta", default=10000.0), "rope": rope,
        "rope_type": rope_type, "tied": bool(config.get("tie_word_embeddings", False)),
    }


def _metadata(writer: Any, method: str, h: dict[str, Any], vocab: _Vocab, name: str) -> None:
    import gguf

    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_block_count(h["layers"])
    writer.add_context_length(h["context"])
    writer.add_embedding_length(h["hidden"])
    writer.add_feed_forward_length(h["ffn"])
    writer.add_head_count(h["heads"])
    writer.add_head_count_kv(h["kv_heads"])
    writer.add_key_length(h["head_dim"])
    writer.add_value_length(h["head_dim"])
    writer.add_rope_dimension_count(h["head_dim"])
    writer.add_rope_freq_base(float(h["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(h["eps"]))
    if h["rope_type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(h["rope"]["factor"]))
    writer.add_vocab_size(len(vocab.tokens))
    writer.add_file_type(getattr(gguf.LlamaFileType, FILE_TYPES[method]))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    vocab.special.add_to_gguf(writer)


def _tensors(state: dict[str, Any], h: dict[str, Any], arch: GGUFArchitecture,
             method: str) -> Iterable[tuple[str, Any, Any]]:
    import gguf
    import numpy as np

    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.gguf_arch), h["layers"])
    for hf_name, tensor in state.items():
        if hf_name.endswith("rotary_emb.inv_freq") or (h["tied"] and hf_name == "lm_head.weight"):
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UsageError(f"GGUF export has no llama.cpp name for the weight {hf_name!r}; save with "
                             "save_method='merged_16bit' and use llama.cpp's convert_hf_to_gguf.py.")
        data = tensor.float().numpy()
        if arch.reorder_qk and name.endswith(("attn_q.weight", "attn_k.weight")):
            data = _reorder_rotary(data, h["heads"] if "attn_q" in name else h["kv_heads"])
        yield (name, *_encode(data, method))
    factors = _llama3_rope_factors(h)
    if factors is not None:
        yield gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", np.asarray(factors, np.float32), \
            gguf.GGMLQuantizationType.F32


def _reorder_rotary(weight: Any, heads: int) -> Any:
    """Rows of a query/key projection from the checkpoint's half-split rotary layout to llama.cpp's interleaved one
    (the inverse of the permutation Llama's HF conversion applied)."""
    return (weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _encode(data: Any, method: str) -> tuple[Any, Any]:
    import gguf
    import numpy as np

    q = gguf.GGMLQuantizationType
    if data.ndim == 1 or method == "f32":
        return data.astype(np.float32), q.F32
    if method == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[q.Q8_0][0] == 0:
        return gguf.quants.quantize(data, q.Q8_0), q.Q8_0
    if method == "bf16":
        return gguf.quants.quantize(data, q.BF16), q.BF16
    return data.astype(np.float16), q.F16


def _llama3_rope_factors(h: dict[str, Any]) -> list[float] | None:
    """Llama 3's rotary frequency scaling as the per-dimension factors llama.cpp reads from `rope_freqs`."""
    import math

    rope = h["rope"]
    if h["rope_type"] != "llama3":
        return None
    dim, base = h["head_dim"], float(h["rope_theta"])
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old = rope.get("original_max_position_embeddings", 8192)
    factors = []
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * base ** (i / dim)
        if wavelen < old / high:
            factors.append(1.0)
        elif wavelen > old / low:
            factors.append(float(factor))
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return factors


def _quantize_with_llama_cpp(source: Path, out: Path, method: str) -> None:
    try:
        import llama_cpp
    except ImportError:
        raise UsageError(f"quantization_method={method!r} needs llama.cpp's quantizer: {LLAMA_CPP_INSTALL}. The f16 "
                         f"file is kept: {source}") from None
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{method.upper()}")
    partial = out.with_name(f".{out.name}.partial")
    try:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), params)
        if status != 0:
            raise UsageError(f"llama.cpp could not quantize {source.name} to {method} (status {status}); the f16 "
                             f"file is kept: {source}")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
