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

from attnpick.errors import UsageError, first_line
from attnpick.util import files

DEFAULT = "embedded"  # the default dataset shipped with attnpick (data/default_sft.jsonl)


EMBEDDED_FILE = "data/default_sft.jsonl"


DATA_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".txt": "text"}


def open_dataset(data_source: str, split: str | None) -> tuple[str, Any]:

    if data_source == DEFAULT:
        path = Path(str(resources.files("attnpick").joinpath(EMBEDDED_FILE)))
        return f"embedded default dataset (attnpick/{EMBEDDED_FILE})", _load_file(path, split)
    path = Path(data_source).expanduser()
    if path.is_dir():
        return _load_folder(path, split, data_source)
    if path.is_file():
        return data_source, _load_file(path, split)
    if path.suffix.lower() in DATA_SUFFIXES or data_source.startswith((".", "/", "~")) or "\\" in data_source:
        raise UsageError(f"Data file {data_source!r} does not exist. Pass a .jsonl/.json/.parquet/.csv file with "
                         "--data.")
    return data_source, _load_hub(data_source, split)


def _load_folder(path: Path, split: str | None, data_source: str) -> tuple[str, Any]:
    """(description, dataset) of a `save_to_disk` folder, or of a folder of data files: every data file in it (and
    its subfolders) whatever its name, one dataset, each file named with its row count in the description; with
    `split` named, the files `datasets` assigns to that split (`train-*.parquet`, `data/test.jsonl`)."""
    import datasets

    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        loaded = _guard(lambda: datasets.load_from_disk(str(path)), data_source)
        if isinstance(loaded, datasets.DatasetDict):
            wanted = split or "train"
            if wanted not in loaded:
                raise UsageError(f"{data_source}: no split {wanted!r}; it has {', '.join(loaded)}. Pass --data-split.")
            loaded = loaded[wanted]
        return data_source, loaded
    root = path.resolve()
    if split is None:
        found = _every_data_file(root)
    else:
        splits = _data_files(root)
        if splits and split not in splits:
            raise UsageError(f"{data_source}: no split {split!r}; its files make {', '.join(splits)}. Pass another "
                             "--data-split, or none to read every file.")
        found = splits.get(split, [])
    if not found:
        raise UsageError(f"{data_source} is a folder without data files (.jsonl/.json/.parquet/.csv/.txt) and is "
                         "not a saved dataset. Pass a data file, a folder written by Dataset.save_to_disk, or a hub "
                         "dataset id.")
    parts = [(f, _load_file(f, None)) for f in found]
    return _combined(parts, data_source, root)


def _every_data_file(root: Path) -> list[Path]:
    """Every file of the folder tree with a data suffix, hidden files and folders (.cache, .git) left out, in a
    stable order."""
    return sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in DATA_SUFFIXES
                  and not any(part.startswith(".") for part in f.relative_to(root).parts))


def _data_files(path: Path) -> dict[str, list[Path]]:
    """The folder's data files by split, as `datasets` names splits from file names (`train-*.parquet`,
    `data/test.jsonl`; any other name is `train`), each file once, in a stable order."""
    from datasets.data_files import DataFilesDict, get_data_patterns

    try:
        patterns = get_data_patterns(str(path))
        resolved = DataFilesDict.from_patterns(patterns, base_path=str(path))
    except Exception:  # noqa: BLE001 - no file datasets recognises: the caller says what to pass
        return {}
    out = {}
    for split, names in resolved.items():
        found = sorted({Path(n).resolve() for n in names if Path(n).suffix.lower() in DATA_SUFFIXES})
        if found:
            out[str(split)] = found
    return out


def _combined(parts: list[tuple[Path, Any]], data_source: str, root: Path) -> tuple[str, Any]:
    """Every file of a folder in one dataset (rows in file order); files whose columns differ cannot be combined."""
    import datasets

    rows = ", ".join(f"{f.relative_to(root)}: {len(d)} rows" for f, d in parts)
    if len(parts) == 1:
        return f"{data_source} ({rows})", parts[0][1]
    columns = {f: sorted(d.column_names) for f, d in parts}
    first_file, first = parts[0]
    for f, _ in parts[1:]:
        if columns[f] != columns[first_file]:
            raise UsageError(f"{data_source}: {f.relative_to(root)} has columns {', '.join(columns[f])} but "
                             f"{first_file.relative_to(root)} has {', '.join(columns[first_file])}: the files cannot "
                             "be read as one dataset. Give them the same columns, or pass one file with --data.")
    try:
        combined = datasets.concatenate_datasets([d.cast(first.features) for _, d in parts])
    except Exception as exc:  # noqa: BLE001 - the same columns with types that do not convert
        raise UsageError(f"{data_source}: its files have the same columns with different types ({first_line(exc)}); "
                         "save them in one format, or pass one file with --data.") from None
    return f"{data_source} ({rows})", combined


def _load_file(path: Path, split: str | None) -> Any:
    import datasets

    builder = DATA_SUFFIXES.get(path.suffix.lower())
    if builder is None:
        raise UsageError(f"{path}: unknown data format {path.suffix or '(no suffix)'}. Use .jsonl, .json, .parquet, "
                         ".csv or .txt.")
    if split not in (None, "train"):
        raise UsageError(f"--data-split {split!r}: a single data file has only the split 'train'.")
    options: dict[str, Any] = {"encoding": _text_encoding(path)} if builder in ("json", "csv") else {}
    if builder == "csv":
        options.update(_csv_as_text(path, options["encoding"]))
    try:
        with _datasets_logging_off():  # a failure is reported once, by attnpick, with the line at fault
            return datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except Exception as exc:  # noqa: BLE001 - any reading failure is the file's; the message names where
        raise UsageError(_read_error(path, builder, exc)) from None


def _text_encoding(path: Path) -> str:
    """UTF-8 with or without a BOM, or UTF-16 with a BOM (what PowerShell 5.1's `>` writes), as facts files are read;
    any other encoding is refused with the fix."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror or exc}).") from None
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    try:
        with open(path, encoding="utf-8-sig") as handle:
            while handle.read(1 << 20):
                pass
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start} cannot be read; a Korean Windows file is often "
                         "CP949/EUC-KR, a Western one Latin-1). Save it as UTF-8, e.g. iconv -f cp949 -t utf-8, or "
                         "'Save as UTF-8' in the editor.") from None
    return "utf-8-sig"


def _no_rows(path: Path, builder: str) -> bool:
    """A file a reader may fail on only because it holds no rows: an empty JSON array, a header-only CSV, a 0-row
    Parquet table."""
    try:
        if builder == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(str(path)).metadata.num_rows == 0
        text = files.read_text(path).strip()
        if builder == "csv":
            return len([line for line in text.splitlines() if line.strip()]) <= 1
        return text == "[]"
    except Exception:  # noqa: BLE001 - unreadable for other reasons: the reader's own error says why
        return False


def _csv_as_text(path: Path, encoding: str) -> dict[str, Any]:
    """Every CSV column read as text: a cell is text to whoever wrote it (an answer `42`, a code `007`)."""
    import csv

    import datasets

    try:
        with open(path, encoding=encoding, newline="") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError):
        return {}  # the reader fails on it and _read_error says why
    if not header or len(set(header)) != len(header):
        return {}
    return {"features": datasets.Features({name: datasets.Value("string") for name in header})}


def _read_error(path: Path, builder: str, exc: Exception) -> str:
    """The first bad line of a JSON Lines file, or the position in a JSON document, when that is the cause; an empty
    file says so (the readers' own errors for it carry no message)."""
    try:
        empty = path.stat().st_size == 0
    except OSError:
        empty = False
    if empty:
        return f"{path}: the file is empty (0 bytes): it has no rows. Give at least one example."
    if _no_rows(path, builder):
        return f"{path}: it has no rows (only a header, or an empty table or array). Give at least one example."
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


def _load_hub(data_source: str, split: str | None) -> Any:
    """A hub dataset's split (`train` unless named): through `datasets` (online, or from its own cache), else from a
    snapshot already in the hub cache (what `hf download ID --repo-type dataset` leaves there)."""
    import datasets
    from huggingface_hub import snapshot_download

    split = split or "train"
    try:
        return _quietly(lambda: datasets.load_dataset(data_source, split=split), data_source, split)
    except UsageError as first:
        try:
            folder = snapshot_download(data_source, repo_type="dataset", local_files_only=True)
        except Exception:  # noqa: BLE001 - not in the hub cache either: the first failure says why
            raise first from None
        return _load_folder(Path(folder), split, data_source)[1]


def _quietly(load: Any, data_source: str, split: str) -> Any:
    """Run a `datasets` load with its own failure logging off; a failure becomes one UsageError with the fix."""
    try:
        with _datasets_logging_off():
            return load()
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise UsageError(f"{data_source}: no split {split!r} ({first_line(exc)}). Pass --data-split.") \
                from None
        raise UsageError(_hub_error(data_source, exc)) from None
    except Exception as exc:  # noqa: BLE001 - offline, unknown id, network: one message with the fix
        raise UsageError(_hub_error(data_source, exc)) from None


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


def _hub_error(data_source: str, exc: Exception) -> str:
    from huggingface_hub import constants

    why = "HF_HUB_OFFLINE is set and it is not in the local cache" if constants.HF_HUB_OFFLINE else \
        f"it could not be fetched ({type(exc).__name__})"
    return (f"Data {data_source!r} is neither a local file or folder nor a loadable hub dataset: {why}. Pass a "
            f"local .jsonl/.json/.parquet/.csv file, or on a connected machine run hf download {data_source} "
            "--repo-type dataset (into the hub cache; or --local-dir DIR, then --data DIR).")


def _guard(load: Any, data_source: str) -> Any:
    try:
        return load()
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{data_source}: cannot be read as a saved dataset ({type(exc).__name__}: "
                         f"{first_line(exc)}).") from None


def mapped(dataset: Any, function: Any, desc: str, **kwargs: Any) -> Any:
    """`dataset.map(function, **kwargs)` with a progress label where the dataset takes one (an `IterableDataset`
    maps lazily and has no `desc`)."""
    import datasets

    if isinstance(dataset, datasets.Dataset):
        kwargs["desc"] = desc
    return dataset.map(function, **kwargs)
