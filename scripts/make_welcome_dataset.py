"""Write examples/welcome/{train,eval}.jsonl: the real-model task (docs/real-model.md). A user message gives a
guest's romanized name, city and team as fields; the answer is one fixed Korean welcome sentence built from them.
A pretrained instruct model cannot guess the exact sentence, so exact match on held-out rows starts near 0 and
only training brings it up. The eval rows' names are never in the training rows (first and family names are
split between the two sets), so copying the fields, not memorising them, is what is learned. Deterministic.

    python scripts/make_welcome_dataset.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "examples" / "welcome"
TRAIN_ROWS, EVAL_ROWS = 96, 20
FIRST = ["Minji", "Seojun", "Jiwoo", "Hayoon", "Doyun", "Seoyeon", "Eunwoo", "Jiho", "Sua", "Yejun", "Chaewon",
         "Siwoo", "Jiyu", "Hajun", "Dain", "Junseo", "Yuna", "Minjun", "Harin", "Taeyang"]
FAMILY = ["Kim", "Lee", "Park", "Choi", "Jung", "Kang", "Cho", "Yoon", "Jang", "Lim", "Han", "Oh"]
CITIES = ["Seoul", "Busan", "Daegu", "Incheon", "Gwangju", "Daejeon", "Ulsan", "Suwon", "Jeju", "Jeonju"]
TEAMS = ["Data", "Design", "Sales", "Research", "Support", "Finance", "Security", "Platform"]


def row(rng: random.Random, first: list[str], family: list[str]) -> dict:
    name, city, team = f"{rng.choice(first)} {rng.choice(family)}", rng.choice(CITIES), rng.choice(TEAMS)
    return {"messages": [
        {"role": "user", "content": f"Welcome card: name={name}; city={city}; team={team}"},
        {"role": "assistant", "content": f"{name}님, {city} {team}팀에 오신 것을 환영합니다!"},
    ]}


def main() -> None:
    rng = random.Random(27)
    # held-out names: first and family names the training rows never use
    train_first, eval_first = FIRST[:15], FIRST[15:]
    train_family, eval_family = FAMILY[:9], FAMILY[9:]
    OUT.mkdir(parents=True, exist_ok=True)
    for name, n, first, family in (("train", TRAIN_ROWS, train_first, train_family),
                                   ("eval", EVAL_ROWS, eval_first, eval_family)):
        lines = [json.dumps(row(rng, first, family), ensure_ascii=False) for _ in range(n)]
        (OUT / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
