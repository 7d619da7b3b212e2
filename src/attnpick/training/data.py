"""Training data in, nothing lost: the rows of any source (`sources`), read in their layout (`layouts`), tokenized
with the model's chat template and loss on the answers only (`tokenization`), every row accounted for.

A row that cannot be trained on is dropped with its reason and counted, never trained on as text:
`rows == examples + dropped.count`. This module holds the accounting (`Drops`, `DataStats`), the checks run before
any model loads (`validate`), the tokenized dataset for `attnpick train` (`load_examples`) and the chat dataset for
TRL (`chat_dataset`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from attnpick.errors import UsageError
from attnpick.training.layouts import (
    CANONICAL,
    DROP_FIXES,
    DROP_REASONS,
    LAYOUTS,
    MALFORMED,
    MALFORMED_FIX,
    detect_layouts,
    parse_columns,
    rename_columns,
    row_layout,
    row_messages,
    text_drop,
)
from attnpick.training.sources import DATA_SUFFIXES, DEFAULT, open_dataset
from attnpick.training.tokenization import (
    ENCODING_VERSION,
    TRUNCATE,
    Example,
    examples_of,
    tokenize,
    tokenize_text,
)

# The names other modules import from here: the data's public face.
__all__ = ["CANONICAL", "DATA_SUFFIXES", "DEFAULT", "DROP_REASONS", "LAYOUTS", "TRUNCATE", "DataStats", "Drops",
           "Example", "chat_dataset", "detect_layouts", "drop_warnings", "examples_of", "load_examples", "open_rows",
           "parse_columns", "validate"]

WARN_DROPPED = 0.10  # a loud warning above this share of rows dropped


EXAMPLE_ROWS = 5


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


def open_rows(data_source: str, split: str | None = None, columns: dict[str, str] | None = None
              ) -> tuple[str, Any, tuple[str, ...]]:
    """(description, `datasets.Dataset` with canonical column names, the layouts its columns allow) for a data
    source."""
    description, dataset = open_dataset(data_source, split)
    dataset = rename_columns(dataset, columns or {}, description)
    if len(dataset) == 0:
        raise UsageError(f"{description}: the dataset is empty. Give at least one example.")
    return description, dataset, detect_layouts(list(dataset.column_names), description)


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


def validate(data_source: str, split: str | None = None, columns: dict[str, str] | None = None,
             strict: bool = False) -> DataStats:
    """Read the data and check every row's structure without a tokenizer (fast, before any model is loaded)."""
    description, dataset, layouts = open_rows(data_source, split, columns)
    codes, used = [], {}
    for row in dataset:
        layout = row_layout(row, layouts)
        used[layout] = used.get(layout, 0) + 1
        codes.append(_row_code(row, layout))
    drops = _drops(codes)
    if strict:
        _fail_on_malformed(drops, description, codes)
    if drops.count == len(codes):
        raise UsageError(f"{description}: no row can be trained on ({drops.summary()}).")
    return DataStats(description, len(codes), len(codes) - drops.count, drops, used)


def _row_code(row: dict[str, Any], layout: str) -> str:
    """"" when the row can be trained on in `layout`, else the code of why not."""
    if layout == "text":
        return text_drop(row)
    return code if isinstance(code := row_messages(row, layout), str) else ""


def _encoded(row: dict[str, Any], layouts: Any, tokenizer: Any, max_length: int, truncate: str,
             version: int) -> dict[str, Any]:
    """One row as tokens with answer-only labels, or the reason it is dropped (`version`: attnpick's encoding, part
    of the cache key)."""
    layout = row_layout(row, layouts)
    if layout == "text":
        code = text_drop(row)
        out = {"drop": code} if code else tokenize_text(row["text"], tokenizer, max_length, truncate)
    else:
        messages = row_messages(row, layout)
        out = {"drop": messages} if isinstance(messages, str) else tokenize(messages, tokenizer, max_length,
                                                                             truncate)
    ids, labels = out.get("input_ids", []), out.get("labels", [])
    return {"drop": out["drop"], "input_ids": ids, "labels": labels, "length": len(ids),
            "answer_tokens": sum(1 for x in labels if x != -100), "truncated": out.get("truncated", False),
            "lost_eot": out.get("lost_eot", False), "layout": layout}


def _as_chat(row: dict[str, Any], layouts: Any, version: int) -> dict[str, Any]:
    messages = row_messages(row, row_layout(row, layouts))
    return {"messages": [] if isinstance(messages, str) else messages,
            "drop": messages if isinstance(messages, str) else ""}


def _kept(drop: str) -> bool:
    return drop == ""


def load_examples(data_source: str, tokenizer: Any, max_length: int, split: str | None = None,
                  columns: dict[str, str] | None = None, truncate: str = "right",
                  strict: bool = False) -> tuple[Any, DataStats]:
    """Every row tokenized (a `datasets.Dataset` of input_ids and labels, kept on disk by Arrow, not as Python
    lists), and the stats that account for every row."""
    if truncate not in TRUNCATE:
        raise UsageError(f"--truncate must be right or left, got {truncate!r}.")
    description, dataset, layouts = open_rows(data_source, split, columns)
    # datasets fingerprints the result from the rows' own fingerprint and these arguments (tokenizers hash
    # deterministically there): the same data and settings reuse the cached encoding, anything else re-encodes.
    encoded = dataset.map(_encoded, remove_columns=dataset.column_names, desc="tokenizing",
                          fn_kwargs={"layouts": layouts, "tokenizer": tokenizer, "max_length": max_length,
                                     "truncate": truncate, "version": ENCODING_VERSION})
    codes = encoded["drop"]
    drops = _drops(codes)
    if strict:
        _fail_on_malformed(drops, description, codes)
    kept = encoded.filter(_kept, input_columns="drop")
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


def chat_dataset(data_source: str, split: str | None = None,
                 columns: dict[str, str] | None = None) -> tuple[Any, Drops]:
    """The data in the shape TRL's SFTTrainer takes (one 'messages' column of role/content turns), whatever its
    layout; malformed rows are dropped and counted, as `attnpick train` does."""
    description, dataset, layouts = open_rows(data_source, split, columns)
    converted = dataset.map(_as_chat, remove_columns=dataset.column_names,
                            fn_kwargs={"layouts": layouts, "version": ENCODING_VERSION})
    drops = _drops(converted["drop"])
    kept = converted.filter(_kept, input_columns="drop")
    if len(kept) == 0:
        raise UsageError(f"{description}: no row can be trained on ({drops.summary()}).")
    return kept.remove_columns("drop"), drops


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
                     f"on: {stats.dropped.summary()}. {drop_fixes(stats.dropped)}; --max-dropped makes this an "
                     "error.")
    return notes


def drop_fixes(dropped: Drops) -> str:
    """What keeps the dropped rows, per reason: the option to change, or the rows to fix."""
    fixes = [DROP_FIXES[code] for code in dropped.by_reason if code in DROP_FIXES]
    if any(code in MALFORMED for code in dropped.by_reason):
        fixes.append(MALFORMED_FIX)
    return "; ".join(dict.fromkeys(fixes)).capitalize() or "Nothing keeps them"
