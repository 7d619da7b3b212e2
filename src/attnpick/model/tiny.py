"""`tiny-exaone`: a deterministic tiny EXAONE-3.5 checkpoint laid out exactly as on the hub.

config.json with `model_type: exaone` and the remote-code `auto_map`, the original weight names
(`transformer.h.0.attn.attention.q_proj.weight`, ...), tied embeddings like the 2.4B, GQA (4 query heads,
2 kv heads), a byte-level BPE tokenizer trained offline on `data/tiny_corpus.txt`, and EXAONE's chat
template. Built on first use into the cache folder; the name `tiny-exaone` works wherever a model id does.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from attnpick.errors import UsageError
from attnpick.model.config import check_model_files, read_config
from attnpick.util import files
from attnpick.util.cache import cache_dir

NAME = "tiny-exaone"
VERSION = 1
SEED = 20241208

SPECIAL_TOKENS = ["[PAD]", "[BOS]", "[|endofturn|]", "[UNK]", "[|system|]", "[|user|]", "[|assistant|]"]

# EXAONE 3.5's chat template: system turn first (empty if absent), every turn closed by [|endofturn|]
# except the user's, which ends with a newline.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}{{ '[|system|][|endofturn|]\n' }}{% endif %}"
    "{{ '[|' + message['role'] + '|]' + message['content'] }}"
    "{% if message['role'] == 'user' %}{{ '\n' }}{% else %}{{ '[|endofturn|]\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '[|assistant|]' }}{% endif %}"
)


def config(vocab_size: int) -> dict[str, Any]:
    """EXAONE-3.5-2.4B's config, shrunk: same keys, same rope scaling, tied embeddings, GQA 2:1."""
    return {
        "activation_function": "silu",
        "architectures": ["ExaoneForCausalLM"],
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_exaone.ExaoneConfig",
            "AutoModelForCausalLM": "modeling_exaone.ExaoneForCausalLM",
        },
        "bos_token_id": 1,
        "embed_dropout": 0.0,
        "eos_token_id": 2,
        "head_dim": 16,
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "layer_norm_epsilon": 1e-05,
        "max_position_embeddings": 32768,
        "model_type": "exaone",
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_layers": 2,
        "pad_token_id": 0,
        "rope_scaling": {
            "factor": 8.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": vocab_size,
    }


def _weights(cfg: dict[str, Any]) -> dict[str, Any]:
    import torch

    gen = torch.Generator().manual_seed(SEED)
    h, inter, d = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    q_out, kv_out = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * cfg["initializer_range"] * 4

    def norm() -> torch.Tensor:
        return 1.0 + 0.1 * torch.randn(h, generator=gen)

    tensors = {"transformer.wte.weight": randn(cfg["vocab_size"], h)}
    for i in range(cfg["num_layers"]):
        p = f"transformer.h.{i}."
        tensors.update({
            p + "ln_1.weight": norm(),
            p + "attn.attention.q_proj.weight": randn(q_out, h),
            p + "attn.attention.k_proj.weight": randn(kv_out, h),
            p + "attn.attention.v_proj.weight": randn(kv_out, h),
            p + "attn.attention.out_proj.weight": randn(h, q_out),
            p + "ln_2.weight": norm(),
            p + "mlp.c_fc_0.weight": randn(inter, h),
            p + "mlp.c_fc_1.weight": randn(inter, h),
            p + "mlp.c_proj.weight": randn(h, inter),
        })
    tensors["transformer.ln_f.weight"] = norm()
    return {k: v.contiguous() for k, v in tensors.items()}


def _tokenizer(folder: Path) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = resources.files("attnpick").joinpath("data/tiny_corpus.txt").read_text(encoding="utf-8")
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=640, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus.splitlines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="[BOS]", eos_token="[|endofturn|]", pad_token="[PAD]", unk_token="[UNK]",
        additional_special_tokens=["[|system|]", "[|user|]", "[|assistant|]"], model_max_length=32768,
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(folder))
    return len(fast)


def build(folder: Path) -> Path:
    """Write tiny-exaone into `folder` (created if missing)."""
    from safetensors.torch import save_file  # heavy (torch): only when the model is built

    folder.mkdir(parents=True, exist_ok=True)
    vocab = _tokenizer(folder)
    cfg = config(vocab)
    save_file(_weights(cfg), str(folder / "model.safetensors"), metadata={"format": "pt"})
    files.write_json(folder / "config.json", cfg)
    files.write_json(folder / "generation_config.json",
                     {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "transformers_version": "4.43.1"})
    return folder


def ensure() -> Path:
    """The tiny-exaone folder in the cache, built on first use and rebuilt when it is incomplete (written
    atomically: a crash leaves no half folder)."""
    final = cache_dir() / "models" / f"{NAME}-v{VERSION}"
    if _complete(final):
        return final
    with files.publish_folder(final, replace=True) as staging:
        build(staging)
    return final


def _complete(folder: Path) -> bool:
    """Every file of the build is there and the weights' header reads back (a truncated copy is rebuilt)."""
    needed = ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors")
    if not all((folder / name).is_file() for name in needed):
        return False
    try:
        read_config(folder)
        check_model_files(folder)
    except UsageError:
        return False
    return True


# Models with real shapes and random weights, for timing only: config.json (as Llama: EXAONE 3.x is a Llama
# under other names) and tiny-exaone's tokenizer, no weights; the loader builds them from the config.
RANDOM_MODELS: dict[str, dict[str, Any]] = {
    "exaone-2.4b-random": {  # EXAONE-3.5-2.4B-Instruct's shapes
        "hidden_size": 2560, "intermediate_size": 7168, "num_hidden_layers": 30, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 80, "vocab_size": 102400, "tie_word_embeddings": True,
    },
    # An EXAONE-shaped stand-in of ~46M parameters (GQA 4:1, intermediate 2.75x hidden, tied embeddings) with
    # tiny-exaone's tokenizer: big enough that compute, not per-step overhead, dominates a CPU training step.
    "exaone-50m-random": {
        "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 16, "num_attention_heads": 8,
        "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 640, "tie_word_embeddings": True,
    },
}
RANDOM_MARKER = "attnpick-random.json"


def ensure_random(name: str) -> Path:
    """The folder of a random-weight model (config and tokenizer only), written on first use."""
    final = cache_dir() / "models" / f"{name}-v{VERSION}"
    if (final / RANDOM_MARKER).is_file():
        return final
    tokenizer_folder = ensure()
    with files.publish_folder(final, replace=True) as staging:
        for side in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
            if (tokenizer_folder / side).is_file():
                shutil.copy2(tokenizer_folder / side, staging / side)
        cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu",
               "rms_norm_eps": 1e-5, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
               "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, **RANDOM_MODELS[name]}
        files.write_json(staging / "config.json", cfg)
        files.write_json(staging / RANDOM_MARKER, {"name": name, "weights": "random, seed 0: timing only"})
    return final
