"""The welcome task: copy two fields of a record into a fixed Korean sentence. A pretrained instruct model cannot do
it as asked (it does not know the sentence), a LoRA learns it in minutes on a CPU, and the held-out names and cities
never appear in training, so exact match on them measures the format learned, not memorised rows.

    python examples/welcome/make_data.py    # writes train.jsonl and eval.jsonl beside this file (deterministic)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = ["Minsu", "Jiwoo", "Seoyeon", "Hajun", "Doyun", "Siwoo", "Eunwoo", "Jiho", "Yejun", "Jian", "Seojun",
         "Harin", "Yuna", "Jimin", "Taeyang", "Sua", "Chaewon", "Dohyun", "Yerin", "Junseo", "Somin", "Hyunwoo",
         "Nari", "Gaeun", "Mingyu", "Daeun", "Jaehyun", "Bora", "Sungmin", "Hana", "Yujin", "Kyungho"]
CITIES = ["Busan", "Incheon", "Daegu", "Gwangju", "Daejeon", "Ulsan", "Suwon", "Jeonju", "Gangneung", "Chuncheon",
          "Pohang", "Gyeongju", "Mokpo", "Yeosu", "Andong", "Sokcho"]
HELD_OUT_NAMES = NAMES[-8:]  # never in training
HELD_OUT_CITIES = CITIES[-4:]


def answer(name: str, city: str) -> str:
    return f"{name}님, {city}에 오신 것을 환영합니다!"


def row(name: str, city: str) -> dict:
    return {"messages": [{"role": "user", "content": f"이름: {name}\n도시: {city}"},
                         {"role": "assistant", "content": answer(name, city)}]}


def main() -> None:
    rng = random.Random(20261202)
    seen = [(n, c) for n in NAMES[:-8] for c in CITIES[:-4]]
    rng.shuffle(seen)
    unseen = [(n, c) for n in HELD_OUT_NAMES for c in HELD_OUT_CITIES]
    rng.shuffle(unseen)
    for name, pairs in (("train.jsonl", seen[:64]), ("eval.jsonl", unseen[:20])):
        with (HERE / name).open("w", encoding="utf-8") as handle:
            for n, c in pairs:
                handle.write(json.dumps(row(n, c), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
