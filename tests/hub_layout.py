"""Model folders laid out like the hub, built from tiny-exaone."""

from __future__ import annotations

import shutil
from pathlib import Path


def hub_cache_copy(src: Path, cache: Path, repo_id: str, revision: str = "0" * 40) -> Path:
    """Place `src` in a Hugging Face hub cache (`$HF_HUB_CACHE`) as `repo_id` at `revision`."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, snapshot / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return snapshot
