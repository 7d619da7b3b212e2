"""llama.cpp's side of the GGUF checks (llama-cpp-python): its greedy continuation and its logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def greedy(path: str | Path, prompt_ids: list[int], n: int) -> list[int]:
    """llama.cpp's greedy continuation of `prompt_ids`: `n` tokens."""
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=256, n_threads=2, verbose=False)
    try:
        tokens: list[int] = []
        for token in llm.generate(prompt_ids, temp=0.0, top_k=1, reset=True):
            if len(tokens) == n:
                break
            tokens.append(token)
        return tokens
    finally:
        llm.close()


def logits(path: str | Path, ids: list[int]) -> np.ndarray:
    """llama.cpp's logits at every position of `ids`."""
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=256, n_threads=2, verbose=False, logits_all=True)
    try:
        llm.eval(ids)
        return np.array(llm.scores[:len(ids)])
    finally:
        llm.close()


def tokenize(path: str | Path, text: str) -> list[int]:
    """llama.cpp's own tokens for `text`, special tokens read as such."""
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=256, verbose=False, vocab_only=True)
    try:
        return llm.tokenize(text.encode(), add_bos=False, special=True)
    finally:
        llm.close()


def merged_reference(merged_folder: str | Path, prompt_ids: list[int], n: int) -> tuple[list[int], np.ndarray]:
    """transformers' side: the merged folder's greedy sequence (prompt and `n` new tokens) and its logits at every
    position of it. transformers 5.17 has no EXAONE class: the same weights under Llama's names there."""
    import torch
    from transformers import AutoModelForCausalLM

    from attnpick.model import exaone

    model = AutoModelForCausalLM.from_pretrained(str(exaone.converted_folder(Path(merged_folder))),
                                                 dtype=torch.float32).eval()
    with torch.no_grad():
        sequence = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, min_new_tokens=n,
                                  do_sample=False)[0].tolist()
        return sequence, model(torch.tensor([sequence])).logits[0].numpy()


def check_against_merged(gguf_files: dict[str, str | Path], merged_folder: str | Path, prompt_ids: list[int],
                         n: int = 16) -> list[int]:
    """The f16 file gives transformers' greedy tokens on the merged folder; every file's logits on that sequence are
    within its type's bound, with the same choice wherever transformers' two best tokens are further apart than
    twice the error (q8_0 rounds weights to 8 bits: a near tie may go the other way). Returns the greedy tokens."""
    sequence, reference = merged_reference(merged_folder, prompt_ids, n)
    expected = sequence[len(prompt_ids):]
    if "f16" in gguf_files:
        assert greedy(gguf_files["f16"], prompt_ids, n) == expected
    spread = np.abs(reference).max()
    top2 = np.sort(reference, axis=-1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    for kind, path in gguf_files.items():
        got = logits(path, sequence)
        error = np.abs(got - reference).max()
        assert error < BOUNDS[kind] * spread, (path, error)
        clear = margin > 2 * error
        assert (got.argmax(-1) == reference.argmax(-1))[clear].all(), (path, error)
    return expected


BOUNDS = {"f32": 1e-3, "f16": 1e-2, "bf16": 3e-2, "q8_0": 5e-2}  # max logit error / largest logit
