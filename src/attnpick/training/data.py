"""Training data in, nothing lost: any file or dataset the `datasets` library reads, in the layouts Korean
instruction data comes in, every row accounted for, rendered with the model's chat template, loss on answers only.

Sources: `.jsonl`, `.json` (an array, or JSON Lines under a .json name), `.parquet`, `.csv`, a `save_to_disk`
folder, a hub dataset id (offline: from the local cache), or the embedded set. Layouts, from the column names:
chat `messages` (role/content), ShareGPT `conversations` (from/value: human, gpt, system), Alpaca/KoAlpaca
`instruction`/`input`/`output`, and `prompt`/`completion`; `--columns` maps other names onto these.

A row that cannot be trained on is dropped with its reason and counted, never trained on as text:
`rows == examples + dropped.count`. EXAONE's template has no generation markers, so the answer spans are found by
rendering: the conversation up to an assistant turn (with the generation prompt) is a prefix of the conversation
with that turn, and the characters in between are the answer, `[|endofturn|]` included so that the model learns
to stop. Tokens whose characters fall in an answer span get labels; every other token gets -100.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from attnpick import files
from attnpick.errors import UsageError, first_line

logger = logging.getLogger(__name__)

DEFAULT = "embedded"  # the default dataset shipped with attnpick (data/default_sft.jsonl)
EMBEDDED_FILE = "data/default_sft.jsonl"
FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# Canonical column names a layout reads; `--columns name=theirs` maps a dataset's own names onto them.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "conversations": ("conversations",),
    "instruction": ("instruction", "output"),
    "prompt": ("prompt", "completion"),
}
CANONICAL = ("messages", "conversations", "instruction", "input", "output", "prompt", "completion", "system")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
CHAT_ROLES = frozenset({"system", "user", "assistant"})
TRUNCATE = ("right", "left")
DROP_REASONS = {
    "null_field": "a required field is null",
    "not_text": "a field that must be text is not",
    "empty_answer": "the answer is empty",
    "unknown_role": "a turn's role is not system, user or assistant (human, gpt)",
    "bad_turns": "the turns are not a list of role/content objects",
    "no_answer": "no assistant turn to learn from",
    "prompt_fills_max_seq_length": "the prompt fills max_seq_length, so no answer token is left",
    "answer_fills_max_seq_length": "the answer alone fills max_seq_length (--truncate left keeps no prompt)",
}
# Drops about the row itself (malformed data), as opposed to its length: --strict-data makes these an error.
MALFORMED = frozenset({"null_field", "not_text", "empty_answer", "unknown_role", "bad_turns", "no_answer"})
WARN_DROPPED = 0.10  # a loud warning above this share of rows dropped
EXAMPLE_ROWS = 5
ENCODING_VERSION = 2  # part of the cache fingerprint of tokenized data: bump when `encode` changes its output


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]


@dataclass(frozen=True)
class Drops:
    """Rows not trained on: how many, why, and the first few row numbers (counting data rows from 1)."""

    count: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    examples: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "by_reason": dict(self.by_reason), "examples": list(self.examples)}

    def summary(self, max_length: int | None = None) -> str:
        """'prompt fills max_seq_length 256: 26 rows; the answer is empty: 2 rows'."""
        parts = []
        for code, n in self.by_reason.items():
            text = DROP_REASONS.get(code, code)
            if max_length and code.endswith("fills_max_seq_length"):
                text = text.replace("max_seq_length", f"max_seq_length {max_length}")
            parts.append(f"{text}: {n} row{'s' if n != 1 else ''}")
        return "; ".join(parts)


@dataclass(frozen=True)
class DataStats:
    dataset: str
    rows: int
    examples: int
    dropped: Drops
    layouts: dict[str, int]
    truncate: str = "right"
    truncated: int = 0
    lost_end_of_turn: int = 0
    tokens: int = 0
    answer_tokens: int = 0
    lengths: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "rows": self.rows, "examples": self.examples,
                "dropped": self.dropped.to_dict(), "layouts": dict(self.layouts), "truncate": self.truncate,
                "truncated": self.truncated, "lost_end_of_turn": self.lost_end_of_turn, "tokens": self.tokens,
                "answer_tokens": self.answer_tokens, "lengths": dict(self.lengths)}


def parse_columns(text: str | dict[str, str] | None) -> dict[str, str]:
    """`instruction=질문,output=답변` -> {"instruction": "질문", "output": "답변"} (canonical name -> your column)."""
    if not text:
        return {}
    if isinstance(text, dict):
        pairs = list(text.items())
    else:
        pairs = []
        for item in text.split(","):
            name, eq, theirs = item.partition("=")
            if not eq or not name.strip() or not theirs.strip():
                raise UsageError(f"--columns {text!r}: write NAME=COLUMN pairs separated by commas, e.g. "
                                 "--columns instruction=질문,output=답변.")
            pairs.append((name.strip(), theirs.strip()))
    unknown = [name for name, _ in pairs if name not in CANONICAL]
    if unknown:
        raise UsageError(f"--columns: {', '.join(unknown)} is not a column attnpick reads. Map onto: "
                         f"{', '.join(CANONICAL)}.")
    return dict(pairs)


def open_rows(spec: str, split: str = "train", columns: dict[str, str] | None = None
              ) -> tuple[str, Any, tuple[str, ...]]:
    """(description, `datasets.Dataset` with canonical column names, the layouts its columns allow) for a spec."""
    description, dataset = _open(spec, split)
    dataset = _rename(dataset, columns or {}, description)
    if len(dataset) == 0:
        raise UsageError(f"{description}: the dataset is empty. Give at least one example.")
    return description, dataset, detect_layouts(list(dataset.column_names), description)


def _open(spec: str, split: str) -> tuple[str, Any]:

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


def _rename(dataset: Any, columns: dict[str, str], description: str) -> Any:
    missing = [theirs for theirs in columns.values() if theirs not in dataset.column_names]
    if missing:
        raise UsageError(f"{description}: --columns names {', '.join(missing)}, which the data does not have. Its "
                         f"columns: {', '.join(dataset.column_names)}.")
    clashing = [name for name, theirs in columns.items() if name in dataset.column_names and name != theirs]
    if clashing:
        dataset = dataset.remove_columns(clashing)
    return dataset.rename_columns({theirs: name for name, theirs in columns.items() if theirs != name})


def detect_layouts(names: list[str], description: str) -> tuple[str, ...]:
    """The layouts whose columns the data has, in order of preference. A file may mix layouts (JSON rows with
    different keys become one table whose missing fields are null): each row then uses the first layout its
    non-null fields fill."""
    found = tuple(layout for layout, needed in LAYOUTS.items() if all(n in names for n in needed))
    if found:
        return found
    raise UsageError(
        f"{description}: unknown layout with columns {', '.join(sorted(names))}. attnpick reads chat 'messages', "
        "ShareGPT 'conversations', 'instruction'/'input'/'output' or 'prompt'/'completion'; map yours with --columns, "
        "e.g. --columns instruction=질문,output=답변.")


def row_layout(row: dict[str, Any], layouts: tuple[str, ...]) -> str:
    """The first of `layouts` whose required fields this row fills (else the first: its nulls are the reason)."""
    return next((layout for layout in layouts if all(row.get(k) is not None for k in LAYOUTS[layout])), layouts[0])


def row_messages(row: dict[str, Any], layout: str) -> list[dict[str, str]] | str:
    """The chat messages of one row in `layout`, or the code of why it cannot be trained on."""
    if layout in ("messages", "conversations"):
        return _turns(row.get(layout), layout)
    if layout == "instruction":
        prompt, extra, answer, system = (row.get(k) for k in ("instruction", "input", "output", "system"))
    else:
        prompt, extra, answer, system = row.get("prompt"), None, row.get("completion"), row.get("system")
    if prompt is None or answer is None:
        return "null_field"
    if not all(isinstance(x, str) for x in (prompt, answer)) or any(
            x is not None and not isinstance(x, str) for x in (extra, system)):
        return "not_text"
    if not answer.strip():
        return "empty_answer"
    if extra:
        prompt += "\n\n" + extra
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def _turns(turns: Any, layout: str) -> list[dict[str, str]] | str:
    if turns is None:
        return "null_field"
    if not isinstance(turns, list) or not turns or not all(isinstance(t, dict) for t in turns):
        return "bad_turns"
    role_key, text_key = ("role", "content") if layout == "messages" else ("from", "value")
    messages = []
    for turn in turns:
        role, text = turn.get(role_key), turn.get(text_key)
        if role is None or text is None:
            return "null_field"
        if not isinstance(role, str) or not isinstance(text, str):
            return "not_text"
        role = role if layout == "messages" else SHAREGPT_ROLES.get(role.lower(), role)
        if role not in CHAT_ROLES:
            return "unknown_role"
        messages.append({"role": role, "content": text})
    answers = [m for m in messages if m["role"] == "assistant"]
    if not answers:
        return "no_answer"
    if not all(m["content"].strip() for m in answers):
        return "empty_answer"
    return messages


def answer_spans(messages: list[dict[str, str]], tokenizer: Any) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True) if i else ""
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not text.startswith(upto) or not upto.startswith(before):
            raise UsageError("The model's chat template does not render a conversation as a prefix of its "
                             "continuation; attnpick cannot find the answer tokens.")
        spans.append((len(before), len(upto)))
    return text, spans


def tokenize(messages: list[dict[str, str]], tokenizer: Any, max_length: int,
             truncate: str = "right") -> dict[str, Any]:
    """input_ids and labels cut to `max_length` (right: the end goes; left: the start of the conversation goes,
    the last answer stays), whether it was cut, whether an answer lost its end-of-turn token, or a drop code."""
    text, spans = answer_spans(messages, tokenizer)
    # verbose=False: the full length is wanted (truncation is counted here), not a warning about it
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = [tid if any(a <= start < b for a, b in spans) else -100 for tid, (start, _) in zip(ids, offsets,
                                                                                                strict=True)]
    cut = len(ids) > max_length
    if truncate == "left" and cut:
        ids, labels = ids[-max_length:], labels[-max_length:]
        if all(label != -100 for label in labels):
            return {"drop": "answer_fills_max_seq_length"}
    else:
        ids, labels = ids[:max_length], labels[:max_length]
    if all(label == -100 for label in labels):
        return {"drop": "prompt_fills_max_seq_length"}
    lost_eot = cut and truncate == "right" and labels[-1] != -100 and not _ends_turn(labels, tokenizer.eos_token_id)
    return {"drop": "", "input_ids": ids, "labels": labels, "truncated": cut, "lost_eot": lost_eot}


def _ends_turn(labels: list[int], eot: int | None) -> bool:
    """Whether the answer the sequence ends in still holds its end-of-turn token."""
    tail = []
    for label in reversed(labels):
        if label == -100:
            break
        tail.append(label)
    return eot is not None and eot in tail


def _drops(codes: list[str]) -> Drops:
    by_reason: dict[str, int] = {}
    rows = []
    for number, code in enumerate(codes, start=1):
        if code:
            by_reason[code] = by_reason.get(code, 0) + 1
            rows.append(number)
    return Drops(len(rows), by_reason, rows[:EXAMPLE_ROWS])


def _fail_on_malformed(drops: Drops, description: str, codes: list[str]) -> None:
    bad = [(n, c) for n, c in enumerate(codes, start=1) if c in MALFORMED]
    if bad:
        number, code = bad[0]
        raise UsageError(f"{description}: row {number}: {DROP_REASONS[code]} ({len(bad)} such row"
                         f"{'s' if len(bad) != 1 else ''}). Fix the data, or drop --strict-data to skip them.")


def validate(spec: str, split: str = "train", columns: dict[str, str] | None = None,
             strict: bool = False) -> DataStats:
    """Read the data and check every row's structure without a tokenizer (fast, before any model is loaded)."""
    description, dataset, layouts = open_rows(spec, split, columns)
    codes, used = [], {}
    for row in dataset:
        layout = row_layout(row, layouts)
        used[layout] = used.get(layout, 0) + 1
        codes.append(code if isinstance(code := row_messages(row, layout), str) else "")
    drops = _drops(codes)
    if strict:
        _fail_on_malformed(drops, description, codes)
    if drops.count == len(codes):
        raise UsageError(f"{description}: no row can be trained on ({drops.summary()}).")
    return DataStats(description, len(codes), len(codes) - drops.count, drops, used)


def load_examples(spec: str, tokenizer: Any, max_length: int, split: str = "train",
                  columns: dict[str, str] | None = None, truncate: str = "right",
                  strict: bool = False) -> tuple[Any, DataStats]:
    """Every row tokenized (a `datasets.Dataset` of input_ids and labels, kept on disk by Arrow, not as Python
    lists), and the stats that account for every row."""
    if truncate not in TRUNCATE:
        raise UsageError(f"--truncate must be right or left, got {truncate!r}.")
    description, dataset, layouts = open_rows(spec, split, columns)

    def encode(row: dict[str, Any]) -> dict[str, Any]:
        layout = row_layout(row, layouts)
        messages = row_messages(row, layout)
        out = {"drop": messages} if isinstance(messages, str) else tokenize(messages, tokenizer, max_length, truncate)
        ids, labels = out.get("input_ids", []), out.get("labels", [])
        return {"drop": out["drop"], "input_ids": ids, "labels": labels, "length": len(ids),
                "answer_tokens": sum(1 for x in labels if x != -100), "truncated": out.get("truncated", False),
                "lost_eot": out.get("lost_eot", False), "layout": layout}

    fingerprint = hashlib.sha256(json.dumps([ENCODING_VERSION, dataset._fingerprint, layouts, max_length, truncate,
                                             len(tokenizer),
                                             tokenizer.chat_template, getattr(tokenizer, "name_or_path", "")],
                                            default=str).encode()).hexdigest()[:32]
    encoded = dataset.map(encode, remove_columns=dataset.column_names, new_fingerprint=fingerprint,
                          desc="tokenizing")
    codes = encoded["drop"]
    drops = _drops(codes)
    if strict:
        _fail_on_malformed(drops, description, codes)
    kept = encoded.filter(lambda drop: drop == "", input_columns="drop", new_fingerprint=fingerprint + "-kept")
    if len(kept) == 0:
        raise UsageError(f"{description}: no row keeps an answer token within {max_length} tokens "
                         f"({drops.summary(max_length)}).")
    lengths = sorted(kept["length"])  # columns of ints: the token lists stay in Arrow, on disk
    answer_tokens = sum(kept["answer_tokens"])
    used: dict[str, int] = {}
    for layout in encoded["layout"]:
        used[layout] = used.get(layout, 0) + 1
    stats = DataStats(description, len(codes), len(kept), drops, used, truncate, sum(kept["truncated"]),
                      sum(kept["lost_eot"]), sum(lengths), answer_tokens,
                      {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]})
    return kept.select_columns(["input_ids", "labels"]), stats


def chat_dataset(spec: str, split: str = "train", columns: dict[str, str] | None = None) -> tuple[Any, Drops]:
    """The data in the shape TRL's SFTTrainer takes (one 'messages' column of role/content turns), whatever its
    layout; malformed rows are dropped and counted, as `attnpick train` does."""
    description, dataset, layouts = open_rows(spec, split, columns)

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        messages = row_messages(row, row_layout(row, layouts))
        return {"messages": [] if isinstance(messages, str) else messages,
                "drop": messages if isinstance(messages, str) else ""}

    converted = dataset.map(convert, remove_columns=dataset.column_names, new_fingerprint=hashlib.sha256(
        json.dumps([ENCODING_VERSION, dataset._fingerprint, layouts, "chat"]).encode()).hexdigest()[:32])
    drops = _drops(converted["drop"])
    kept = converted.filter(lambda drop: drop == "", input_columns="drop")
    if len(kept) == 0:
        raise UsageError(f"{description}: no row can be trained on ({drops.summary()}).")
    return kept.remove_columns("drop"), drops


def examples_of(dataset: Any, count: int) -> list[Example]:
    """The first `count` rows of a tokenized dataset as `Example`s."""
    rows = dataset.select(range(min(count, len(dataset))))
    return [Example(list(ids), list(labels)) for ids, labels in zip(rows["input_ids"], rows["labels"], strict=True)]


def drop_warnings(stats: DataStats, max_dropped: float | None) -> list[str]:
    """The notes about dropped rows; `UsageError` when more than `max_dropped` (a share of the rows) were dropped."""
    share = stats.dropped.count / stats.rows if stats.rows else 0.0
    if max_dropped is not None and share > max_dropped:
        raise UsageError(f"{stats.dataset}: {stats.dropped.count} of {stats.rows} rows dropped ({share:.0%} > "
                         f"--max-dropped {max_dropped:g}): {stats.dropped.summary()}. First rows: "
                         f"{stats.dropped.examples}.")
    notes = []
    if share > WARN_DROPPED:
        notes.append(f"WARNING: {stats.dropped.count} of {stats.rows} rows ({share:.0%}) are dropped and not trained "
                     f"on: {stats.dropped.summary()}. --truncate left keeps answers whose prompt is long; "
                     "--max-dropped makes this an error.")
    return notes
