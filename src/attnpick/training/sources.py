"""Where training data comes from: any file or dataset the `datasets` library reads, opened as one `datasets.Dataset`.

`.jsonl`, `.json` (an array, or JSON Lines under a .json name), `.parquet`, `.csv`, a `save_to_disk` folder, a folder
of data files, a hub dataset id (offline: from the local cache), or the embedded set. A reader's failure becomes one
`UsageError` naming the file, the line where that is the cause, and the fix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from attnpick import files
from attnpick.errors import UsageError, first_line

DEFAULT = "embedded"  # the default dataset shipped with attnpick (data/default_sft.jsonl)


EMBEDDED_FILE = "data/default_sft.jsonl"


FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def open_dataset(spec: str, split: str) -> tuple[str, Any]:

    if spec == DEFAULT:
        path = Path(str(resources.files("attnpick").joinpath(EMBEDDED_FILE)))
        return f"embedded default dataset (attnpick/{EMBEDDED_FILE})", _load_file(path, split)
    path = Path(spec).expanduser()
    if path.is_dir():
        return spec, _load_folder(path, split, spec)
    if path.is_file():
        return spec, _load_file(path, split)
    if path.suffix.lower() in FORMATS or spec.startswith((".", "/", "~")) or "\\" in spec:
        raise UsageError(f"Data file {spec!r} does not exist. Pass a .jsonl/.json/.parquet/.csv file with --data.")
    return spec, _load_hub(spec, split)


def _load_folder(path: Path, split: str, spec: str) -> Any:
    """A `save_to_disk` folder, or a folder of data files (a hub dataset downloaded with `hf download`)."""
    import datasets

    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        loaded = _guard(lambda: datasets.load_from_disk(str(path)), spec)
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise UsageError(f"{spec}: no split {split!r}; it has {', '.join(loaded)}. Pass --data-split.")
            loaded = loaded[split]
        return loaded
    if not any(p.suffix.lower() in FORMATS for p in path.rglob("*") if p.is_file()):
        raise UsageError(f"{spec} is a folder without data files (.jsonl/.json/.parquet/.csv) and is not a saved "
                         "dataset. Pass a data file, a folder written by Dataset.save_to_disk, or a hub dataset id.")
    return _quietly(lambda: datasets.load_dataset(str(path), split=split), spec, split)


def _load_file(path: Path, split: str) -> Any:
    import datasets

    builder = FORMATS.get(path.suffix.lower())
    if builder is None:
        raise UsageError(f"{path}: unknown data format {path.suffix or '(no suffix)'}. Use .jsonl, .json, .parquet "
                         "or .csv.")
    if split != "train":
        raise UsageError(f"--data-split {split!r}: a single data file has only the split 'train'.")
    try:
        with _datasets_logging_off():  # a failure is reported once, by attnpick, with the line at fault
            return datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # noqa: BLE001 - any reading failure is the file's; the message names where
        raise UsageError(_read_error(path, builder, exc)) from None


def _read_error(path: Path, builder: str, exc: Exception) -> str:
    """The first bad line of a JSON Lines file, or the position in a JSON document, when that is the cause; an empty
    file says so (the readers' own errors for it carry no message)."""
    try:
        empty = path.stat().st_size == 0
    except OSError:
        empty = False
    if empty:
        return f"{path}: the file is empty (0 bytes): it has no rows. Give at least one example."
    if builder == "json":
        try:
            text = files.read_text(path)
        except (OSError, UnicodeDecodeError):
            return f"{path}: not UTF-8 or UTF-16 text. Save it as UTF-8."
        if not text.strip():
            return f"{path}: the file holds only blank lines: it has no rows. Give at least one example."
        if text.lstrip().startswith("["):
            try:
                json.loads(text)
            except ValueError as err:
                return f"{path}:{getattr(err, 'lineno', '?')}: not valid JSON ({err.args[0]}). Fix the file."
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as err:
                    return f"{path}:{number}: not valid JSON ({err.args[0]}). Fix or remove the line."
                if not isinstance(row, dict):
                    return f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}."
    cause = exc.__cause__ or exc
    return f"{path}: cannot be read as {builder} ({type(cause).__name__}: {first_line(cause) or 'no message'})."


def _load_hub(spec: str, split: str) -> Any:
    """A hub dataset: through `datasets` (online, or from its own cache), else from a snapshot already in the hub
    cache (what `hf download ID --repo-type dataset` leaves there)."""
    import datasets
    from huggingface_hub import snapshot_download

    try:
        return _quietly(lambda: datasets.load_dataset(spec, split=split), spec, split)
    except UsageError as first:
        try:
            folder = snapshot_download(spec, repo_type="dataset", local_files_only=True)
        except Exception:  # noqa: BLE001 - not in the hub cache either: the first failure says why
            raise first from None
        return _load_folder(Path(folder), split, spec)


def _quietly(load: Any, spec: str, split: str) -> Any:
    """Run a `datasets` load with its own failure logging off; a failure becomes one UsageError with the fix."""
    try:
        with _datasets_logging_off():
            return load()
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise UsageError(f"{spec}: no split {split!r} ({first_line(exc)}). Pass --data-split.") \
                from None
        raise UsageError(_hub_error(spec, exc)) from None
    except Exception as exc:  # noqa: BLE001 - offline, unknown id, network: one message with the fix
        raise UsageError(_hub_error(spec, exc)) from None


@contextmanager
def _datasets_logging_off() -> Iterator[None]:
    """`datasets` logs its own load failures; attnpick reports each once, as a UsageError naming the fix."""
    quiet = logging.getLogger("datasets")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        quiet.setLevel(level)


def _hub_error(spec: str, exc: Exception) -> str:
    from huggingface_hub import constants

    why = "HF_HUB_OFFLINE is set and it is not in the local cache" if constants.HF_HUB_OFFLINE else \
        f"it could not be fetched ({type(exc).__name__})"
    return (f"Data {spec!r} is neither a local file or folder nor a loadable hub dataset: {why}. Pass a local "
            f".jsonl/.json/.parquet/.csv file, or on a connected machine run hf download {spec} --repo-type dataset "
            "(into the hub cache; or --local-dir DIR, then --data DIR).")


def _guard(load: Any, spec: str) -> Any:
    try:
        return load()
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{spec}: cannot be read as a saved dataset ({type(exc).__name__}: "
                         f"{first_line(exc)}).") from None


def mapped(dataset: Any, function: Any, desc: str, **kwargs: Any) -> Any:
    """`dataset.map(function, **kwargs)` with a progress label where the dataset takes one (an `IterableDataset`
    maps lazily and has no `desc`)."""
    import datasets

    if isinstance(dataset, datasets.Dataset):
        kwargs["desc"] = desc
    return dataset.map(function, **kwargs)
