"""Training data as it really comes: JSON arrays, JSONL, Parquet, CSV, save_to_disk folders, hub datasets from the
cache; chat, ShareGPT, Alpaca and prompt/completion layouts; --columns; every row accounted for."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from attnpick.errors import UsageError
from attnpick.model import tiny
from attnpick.training.data import chat_dataset, drop_warnings, load_examples, parse_columns, validate
from tests.helpers import run_cli

ALPACA = [
    {"instruction": "비빔밥 만드는 법을 알려 주세요.", "input": "", "output": "밥에 나물과 고추장을 올려 비빕니다."},
    {"instruction": "Translate to Korean.", "input": "Good morning", "output": "좋은 아침입니다."},
    {"instruction": "서울의 인구는?", "input": "", "output": None},              # null output
    {"instruction": "빈 답", "input": "", "output": "   "},                       # empty answer
    {"instruction": "숫자", "input": "", "output": 3},                            # not text
    {"instruction": "긴 질문 " * 300, "input": "", "output": "짧은 답."},          # prompt fills max_seq_length
]
SHAREGPT = [
    {"conversations": [{"from": "system", "value": "친절하게 답하세요."}, {"from": "human", "value": "안녕?"},
                       {"from": "gpt", "value": "안녕하세요!"}]},
    {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"},
                       {"from": "human", "value": "3+3?"}, {"from": "gpt", "value": "6"}]},
    {"conversations": [{"from": "wizard", "value": "?"}, {"from": "gpt", "value": "!"}]},  # unknown role
    {"conversations": [{"from": "human", "value": "답이 없어요"}]},                           # no answer
]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from attnpick.model.resolve import prepare

    # the folder attnpick loads: tiny-exaone itself, or its Llama copy where transformers has no EXAONE class
    tok = AutoTokenizer.from_pretrained(str(prepare(tiny.NAME).load_folder), trust_remote_code=False)
    tok.model_max_length = 256
    return tok


def write(path: Path, rows: list[dict], kind: str) -> Path:
    if kind == "json":
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif kind == "parquet":
        import pandas as pd

        pd.DataFrame(rows).to_parquet(path)
    elif kind == "csv":
        import pandas as pd

        pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("kind", ["json", "jsonl", "parquet", "csv"])
def test_every_format_reads_and_accounts_for_every_row(tmp_path, tokenizer, kind):
    rows = [r for r in ALPACA if kind == "json" or not isinstance(r["output"], int)]  # columns must be one type
    data = write(tmp_path / f"alpaca.{kind}", rows, kind)
    examples, stats = load_examples(str(data), tokenizer, 128)
    assert stats.rows == len(rows) and stats.rows == stats.examples + stats.dropped.count
    assert stats.examples == len(examples) == 2 and stats.layouts == {"instruction": len(rows)}
    assert stats.dropped.by_reason["prompt_fills_max_seq_length"] == 1
    assert stats.dropped.by_reason.get("null_field", 0) + stats.dropped.by_reason.get("empty_answer", 0) >= 1
    assert all(any(label != -100 for label in labels) for labels in examples["labels"])


def test_a_json_array_is_read_as_one_and_its_drops_are_named(tmp_path, tokenizer):
    data = write(tmp_path / "koalpaca.json", ALPACA, "json")
    _, stats = load_examples(str(data), tokenizer, 128)
    assert stats.dropped.to_dict() == {"count": 4, "by_reason": {"null_field": 1, "empty_answer": 1, "not_text": 1,
                                                                "prompt_fills_max_seq_length": 1},
                                       "examples": [3, 4, 5, 6]}
    assert "the prompt fills max_seq_length 128, so no answer token is left: 1 row" in stats.dropped.summary(128)


def test_json_lines_under_a_json_name(tmp_path, tokenizer):
    data = write(tmp_path / "lines.json", ALPACA[:2], "jsonl")
    _, stats = load_examples(str(data), tokenizer, 128)
    assert stats.examples == 2


def test_sharegpt_roles_are_mapped_and_unknown_roles_dropped(tmp_path, tokenizer):
    data = write(tmp_path / "sharegpt.json", SHAREGPT, "json")
    examples, stats = load_examples(str(data), tokenizer, 256)
    assert stats.examples == 2 and stats.dropped.by_reason == {"unknown_role": 1, "no_answer": 1}
    text = tokenizer.decode(examples[0]["input_ids"])
    assert "[|system|]친절하게" in text and "[|user|]안녕?" in text and "[|assistant|]안녕하세요!" in text
    assert "[|wizard|]" not in "".join(tokenizer.decode(ids) for ids in examples["input_ids"])
    # both answers of the two-turn conversation are learned
    labelled = tokenizer.decode([t for t in examples[1]["labels"] if t != -100])
    assert "4" in labelled and "6" in labelled


def test_columns_map_other_names(tmp_path, tokenizer):
    data = write(tmp_path / "ko.csv", [{"질문": "수도는?", "답변": "서울입니다."}, {"질문": "?", "답변": "!"}], "csv")
    needle = "unknown layout with columns 답변, 질문.*--columns instruction=질문,output=답변"
    with pytest.raises(UsageError, match=needle):
        validate(str(data))
    _, stats = load_examples(str(data), tokenizer, 128, columns=parse_columns("instruction=질문,output=답변"))
    assert stats.examples == 2 and stats.layouts == {"instruction": 2}


def test_save_to_disk_folders_and_splits(tmp_path, tokenizer):
    from datasets import Dataset, DatasetDict

    rows = Dataset.from_list([{"prompt": "a?", "completion": "b."}, {"prompt": "c?", "completion": "d."}])
    rows.save_to_disk(str(tmp_path / "one"))
    DatasetDict({"train": rows, "test": rows.select([0])}).save_to_disk(str(tmp_path / "two"))
    assert validate(str(tmp_path / "one")).rows == 2
    assert validate(str(tmp_path / "two"), split="test").rows == 1
    with pytest.raises(UsageError, match="no split 'dev'; it has train, test"):
        validate(str(tmp_path / "two"), split="dev")


def _hub_dataset(cache: Path, repo_id: str, rows: list[dict]) -> None:
    """A dataset repo as `hf download --repo-type dataset` leaves it in the hub cache: parquet under data/."""
    import pandas as pd

    repo = cache / ("datasets--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("0" * 40) / "data"
    snapshot.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(snapshot / "train-00000-of-00001.parquet")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)


def test_hub_dataset_ids_read_from_the_local_cache_offline(tmp_path, monkeypatch, tokenizer):
    import huggingface_hub.constants as hub_constants

    _hub_dataset(tmp_path / "hub", "acme/ko-alpaca", ALPACA[:2])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    _, stats = load_examples("acme/ko-alpaca", tokenizer, 128)
    assert stats.examples == 2 and stats.dataset == "acme/ko-alpaca"
    with pytest.raises(UsageError, match="HF_HUB_OFFLINE is set and it is not in the local cache.*hf download"):
        validate("acme/not-downloaded")


def test_truncate_left_keeps_the_answer_right_loses_it(tmp_path, tokenizer):
    long = [{"instruction": "긴 질문 " * 300, "input": "", "output": "짧은 답입니다."}]
    data = write(tmp_path / "long.jsonl", long, "jsonl")
    with pytest.raises(UsageError, match="no row keeps an answer token within 128 tokens"):
        load_examples(str(data), tokenizer, 128)
    examples, stats = load_examples(str(data), tokenizer, 128, truncate="left")
    assert stats.examples == 1 and stats.truncated == 1 and stats.lost_end_of_turn == 0
    ids, labels = examples[0]["input_ids"], examples[0]["labels"]
    assert len(ids) == 128 and tokenizer.eos_token_id in [t for t in labels if t != -100]  # the answer ends


def test_right_truncation_counts_answers_that_lost_their_end_of_turn(tmp_path, tokenizer):
    data = write(tmp_path / "long-answer.jsonl", [{"prompt": "쓰세요", "completion": "아주 긴 답 " * 200}], "jsonl")
    _, stats = load_examples(str(data), tokenizer, 64)
    assert stats.truncated == 1 and stats.lost_end_of_turn == 1


def test_too_many_drops_warn_loudly_or_fail_under_max_dropped(tmp_path, tokenizer):
    data = write(tmp_path / "koalpaca.json", ALPACA, "json")
    _, stats = load_examples(str(data), tokenizer, 128)
    [note] = drop_warnings(stats, None)
    assert note.startswith("WARNING: 4 of 6 rows (67%) are dropped")
    with pytest.raises(UsageError, match=r"4 of 6 rows dropped \(67% > --max-dropped 0.5\)"):
        drop_warnings(stats, 0.5)


def test_strict_data_makes_a_malformed_row_an_error_naming_it(tmp_path):
    data = write(tmp_path / "koalpaca.json", ALPACA, "json")
    with pytest.raises(UsageError, match="row 3: a required field is null \\(3 such rows\\)"):
        validate(str(data), strict=True)


def test_a_bom_at_the_start_of_jsonl_is_read(tmp_path):
    data = tmp_path / "bom.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ALPACA[:2]), encoding="utf-8-sig")
    assert validate(str(data)).rows == 2


def test_chat_dataset_is_trls_shape(tmp_path):
    data = write(tmp_path / "mixed.json", ALPACA + [{"instruction": None, "input": None, "output": None}], "json")
    dataset, drops = chat_dataset(str(data))
    assert dataset.column_names == ["messages"] and len(dataset) + drops.count == 7
    assert dataset[0]["messages"][-1] == {"role": "assistant", "content": ALPACA[0]["output"]}


@pytest.mark.parametrize("columns, needle", [
    ("instruction", "write NAME=COLUMN pairs"),
    ("question=질문", "question is not a column attnpick reads"),
])
def test_bad_columns_option(columns, needle):
    with pytest.raises(UsageError, match=needle):
        parse_columns(columns)


def train_cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return run_cli("train", *args, timeout=timeout)


def test_an_alpaca_json_array_trains_and_its_report_accounts_for_every_row(tmp_path):
    data = write(tmp_path / "koalpaca.json", ALPACA * 3, "json")
    out = tmp_path / "run"
    proc = train_cli("--output", str(out), "--data", str(data), "--max-seq-length", "128", "--max-steps", "2",
                     "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "18 rows" in proc.stdout and "6 trained on, 12 dropped" in proc.stdout
    assert "the prompt fills max_seq_length 128, so no answer token is left: 3 rows" in proc.stdout
    assert "WARNING: 12 of 18 rows (67%) are dropped" in proc.stdout
    report = json.loads((out / "train_report.json").read_text(encoding="utf-8"))["data"]
    assert report["rows"] == report["examples"] + report["dropped"]["count"] == 18
    assert report["dropped"]["examples"] == [3, 4, 5, 6, 9]


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_parquet_csv_sharegpt_and_columns_inputs_train(tmp_path, kind):
    data = write(tmp_path / f"ko.{kind}", [{"질문": f"{i} 더하기 {i}는?", "답변": f"{2 * i}입니다."} for i in range(8)],
                 kind)
    out = tmp_path / "run"
    proc = train_cli("--output", str(out), "--data", str(data), "--columns", "instruction=질문,output=답변",
                     "--max-steps", "2", "--batch-size", "4", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["data"]["examples"] == 8
    sharegpt = write(tmp_path / "sharegpt.json", SHAREGPT * 2, "json")
    proc = train_cli("--output", str(tmp_path / "run2"), "--data", str(sharegpt), "--max-steps", "2", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the CPU default, said in one line: the unquantized model, since 4-bit costs time on a CPU
    report = json.loads(proc.stdout)
    assert report["quantization"] is None
    assert [n for n in report["notes"] if n.startswith("CPU: training the unquantized model, not 4-bit")]
    data_report = report["data"]
    assert data_report["layouts"] == {"conversations": 8} and data_report["dropped"]["count"] == 4


@pytest.mark.parametrize("args, needle", [
    (["--data", "nope/missing-dataset"], "HF_HUB_OFFLINE is set"),
    (["--data", "x.parquet"], "does not exist"),
    (["--columns", "nope"], "write NAME=COLUMN pairs"),
    (["--max-dropped", "1.5"], "--max-dropped must be a finite number at least 0 and below 1"),
    (["--truncate", "middle"], "invalid choice: 'middle'"),
])
def test_bad_data_options_exit_2_and_write_nothing(tmp_path, args, needle):
    out = tmp_path / "out"
    proc = train_cli("--output", str(out), *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_max_dropped_fails_before_any_model_loads(tmp_path):
    data = write(tmp_path / "koalpaca.json", ALPACA, "json")
    proc = train_cli("--output", str(tmp_path / "out"), "--data", str(data), "--max-dropped", "0.2")
    assert proc.returncode == 2 and "--max-dropped 0.2" in proc.stderr
    assert not (tmp_path / "out").exists()
