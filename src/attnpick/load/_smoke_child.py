"""Child process: prove one attention backend on this device, at the model's attention shapes.

Run as `python -m attnpick.load._smoke_child '<json job>'` through `attnpick.util.subproc`. Builds a one-layer Llama
with the model's query heads, kv heads (GQA) and head_dim, loads it with the backend, and runs a forward and
a backward pass on a padded batch (one left-padded and one right-padded row). Prints one marked result line.
Runs in a child so that a segfault, a CUDA fault or a hang cannot take the caller down.

torch and transformers are imported inside the functions: a loader that patches them on import (Unsloth) must be
imported before them.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
from typing import Any

from attnpick.backends.registry import CATALOG, ensure_registered
from attnpick.util.subproc import serve


def _tiny_llama(job: dict[str, Any]) -> Any:
    from transformers import LlamaConfig

    heads, kv, head_dim = job["heads"], job["kv_heads"], job["head_dim"]
    return LlamaConfig(
        vocab_size=128, hidden_size=heads * head_dim, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim, max_position_embeddings=4096,
        pad_token_id=0, tie_word_embeddings=False,
    )


def _batch(job: dict[str, Any], device: Any) -> dict[str, Any]:
    import torch

    seq, pad = job["seq"], max(1, job["seq"] // 4)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 128, (2, seq), generator=gen)
    mask = torch.ones(2, seq, dtype=torch.long)
    mask[0, :pad] = 0  # left padding
    mask[1, seq - pad:] = 0  # right padding
    ids = ids.masked_fill(mask == 0, 0)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def _run_transformers(job: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import LlamaForCausalLM

    ensure_registered(job["backend"])
    device = torch.device(job["device"])
    dtype = getattr(torch, job["dtype"])
    torch.manual_seed(0)
    model = LlamaForCausalLM(_tiny_llama(job)).to(device=device, dtype=dtype)
    model.set_attn_implementation(job["attn_implementation"])
    return _forward_backward(model, job, device)


def _run_loader(job: dict[str, Any]) -> dict[str, Any]:
    """A model loader (Unsloth) loads a one-layer Llama saved to a folder, as it would load the user's model."""
    spec = CATALOG[job["backend"]]
    for module in spec.modules.values() if spec.import_alone else ():
        importlib.import_module(module)  # before torch and transformers: it patches them on import
    import torch
    from transformers import LlamaForCausalLM

    folder = tempfile.mkdtemp(prefix="attnpick-smoke-")
    torch.manual_seed(0)
    LlamaForCausalLM(_tiny_llama(job)).save_pretrained(folder)
    _save_tokenizer(folder)
    assert spec.load is not None
    model, _, _ = spec.load(folder, max(64, job["seq"]), job["dtype"], False)
    device = next(model.parameters()).device
    return _forward_backward(model, job, device)


def _save_tokenizer(folder: str) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(128)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t1"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="t0", eos_token="t2").save_pretrained(folder)


def _forward_backward(model: Any, job: dict[str, Any], device: Any) -> dict[str, Any]:
    import torch

    batch = _batch(job, device)
    model.train(job.get("training", True))
    start = time.perf_counter()
    out = model(**batch, use_cache=False)
    logits = out.logits.float()
    keep = batch["attention_mask"].bool()
    if not torch.isfinite(logits[keep]).all():
        raise FloatingPointError("non-finite logits at non-padding positions")
    if job.get("training", True):
        logits[keep].square().mean().backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            raise RuntimeError("backward produced no gradients")
        if not all(torch.isfinite(g).all() for g in grads):
            raise FloatingPointError("non-finite gradients")
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"seconds": round(time.perf_counter() - start, 4)}


def _run(job: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return _run_loader(job) if CATALOG[job["backend"]].is_loader else _run_transformers(job)


def main(argv: list[str]) -> int:
    return serve(argv, _run)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
