"""Uploading what a run made to the Hugging Face hub (huggingface_hub): offline or without a token, one clear error
naming the fix before anything is written."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from attnpick.errors import UsageError, first_line


def push_folder(write: Callable[[str], str], repo_id: str, token: str | None = None,
                private: bool | None = None) -> str:
    """Write the model with `write(folder)` (a merged folder, GGUF files) into a temporary folder and upload what it
    wrote to `repo_id`."""
    from huggingface_hub import HfApi, constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise UsageError(f"push to {repo_id!r}: HF_HUB_OFFLINE is set. Unset it on a connected machine, or save "
                         "locally (save_pretrained_merged, save_pretrained_gguf).")
    token = token or get_token()
    if not token:
        raise UsageError(f"push to {repo_id!r}: no Hugging Face token. Run 'hf auth login' or pass token=.")
    with tempfile.TemporaryDirectory() as tmp:
        folder = write(str(Path(tmp) / "model"))
        api = HfApi(token=token)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, folder_path=folder)
        except Exception as exc:  # noqa: BLE001 - network, permissions: one message with the cause
            raise UsageError(f"push to {repo_id!r} failed: {type(exc).__name__}: {first_line(exc)}. Check the "
                             "connection and the token's write permission.") from None
    return repo_id
