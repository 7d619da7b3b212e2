"""Write src/attnpick/data/default_sft.jsonl: short Korean and English instruction/answer pairs written for
attnpick (not copied from any dataset), in the three layouts `attnpick train` reads, with a spread of lengths
from a few tokens to a few hundred. Deterministic: rerunning gives the same file.

    python scripts/make_default_dataset.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "attnpick" / "data" / "default_sft.jsonl"

CITIES = [("서울", "Seoul", "대한민국의 수도"), ("부산", "Busan", "바다가 아름다운 항구 도시"),
          ("대구", "Daegu", "사과로 유명한 내륙 도시"), ("광주", "Gwangju", "예술과 음식의 도시"),
          ("제주", "Jeju", "화산섬이자 관광지"), ("인천", "Incheon", "국제공항이 있는 도시"),
          ("대전", "Daejeon", "과학 연구 단지가 있는 도시"), ("수원", "Suwon", "화성 성곽으로 알려진 도시")]
WORDS = [("사과", "apple"), ("바다", "sea"), ("하늘", "sky"), ("책", "book"), ("학교", "school"),
         ("친구", "friend"), ("시간", "time"), ("물", "water"), ("나무", "tree"), ("음악", "music"),
         ("커피", "coffee"), ("기차", "train"), ("도서관", "library"), ("비", "rain"), ("눈", "snow")]
TOPICS = [
    ("어텐션", "attention", "질의와 키의 내적으로 가중치를 만들고 그 가중치로 값을 더하는 연산",
     "an operation that weights values by the dot products of queries and keys"),
    ("패딩", "padding", "배치 안의 길이를 맞추려고 넣는 토큰", "tokens added so that rows in a batch have one length"),
    ("양자화", "quantization", "가중치를 더 적은 비트로 저장해 메모리를 줄이는 방법",
     "storing weights in fewer bits to save memory"),
    ("로라", "LoRA", "큰 가중치의 변화를 작은 행렬 두 개로 표현하는 미세 조정 방법",
     "fine-tuning that expresses a weight update with two small matrices"),
    ("학습률", "learning rate", "한 번의 업데이트에서 가중치를 얼마나 움직일지 정하는 값",
     "how far one update moves the weights"),
    ("토크나이저", "tokenizer", "문장을 모델이 읽는 토큰으로 나누는 도구", "the tool that splits text into tokens"),
    ("체크포인트", "checkpoint", "학습 도중의 상태를 저장해 두었다가 이어서 학습할 수 있게 하는 파일",
     "a saved training state that lets a run continue later"),
    ("배치", "batch", "한 번에 함께 처리하는 예제 묶음", "the group of examples processed together"),
]
FOODS = [("김치찌개", ["김치", "돼지고기", "두부", "파"]), ("된장찌개", ["된장", "애호박", "두부", "감자"]),
         ("비빔밥", ["밥", "나물", "고추장", "달걀"]), ("떡볶이", ["떡", "어묵", "고추장", "설탕"]),
         ("불고기", ["소고기", "간장", "배", "마늘"])]


def arithmetic(rng: random.Random) -> dict:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    op = rng.choice(["+", "-", "*"])
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    if rng.random() < 0.5:
        return {"instruction": f"{a} {op} {b}는 얼마인가요?", "input": "", "output": f"{a} {op} {b} = {value}입니다."}
    return {"prompt": f"What is {a} {op} {b}?", "completion": f"{a} {op} {b} = {value}."}


def translate(rng: random.Random) -> dict:
    ko, en = rng.choice(WORDS)
    if rng.random() < 0.5:
        return {"instruction": "다음 단어를 영어로 번역하세요.", "input": ko, "output": en}
    return {"messages": [{"role": "user", "content": f"Translate '{en}' into Korean."},
                         {"role": "assistant", "content": f"'{en}'은(는) 한국어로 '{ko}'입니다."}]}


def city(rng: random.Random) -> dict:
    ko, en, desc = rng.choice(CITIES)
    if rng.random() < 0.5:
        return {"messages": [{"role": "system", "content": "당신은 친절한 여행 도우미입니다."},
                             {"role": "user", "content": f"{ko}는 어떤 곳인가요?"},
                             {"role": "assistant", "content": f"{ko}는 {desc}입니다. 한 번 방문해 보세요."}]}
    return {"prompt": f"Tell me about {en} in one sentence.",
            "completion": f"{en} is a Korean city; in Korean it is called {ko}."}


def explain(rng: random.Random) -> dict:
    ko, en, ko_def, en_def = rng.choice(TOPICS)
    detail = rng.randint(1, 6)
    if rng.random() < 0.5:
        extra = " ".join(["예를 들어 작은 모델로 먼저 시험해 보고, 결과를 기록한 뒤 큰 모델로 옮기면 좋습니다."] * detail)
        return {"instruction": f"{ko}이(가) 무엇인지 설명해 주세요.", "input": "",
                "output": f"{ko}은(는) {ko_def}입니다. {extra}"}
    extra = " ".join(["Try it on a small model first, write the result down, then move to the big one."] * detail)
    return {"messages": [{"role": "user", "content": f"Explain {en} briefly."},
                         {"role": "assistant", "content": f"{en.capitalize()} is {en_def}. {extra}"}]}


def recipe(rng: random.Random) -> dict:
    name, items = rng.choice(FOODS)
    steps = rng.randint(2, 8)
    body = " ".join(f"{i + 1}단계: 재료를 손질하고 불 조절을 확인합니다." for i in range(steps))
    return {"instruction": f"{name}에 필요한 재료와 만드는 순서를 알려 주세요.", "input": "",
            "output": f"재료는 {', '.join(items)}입니다. {body} 마지막으로 간을 보고 마무리합니다."}


def multiturn(rng: random.Random) -> dict:
    a, b = rng.randint(1, 20), rng.randint(1, 20)
    return {"messages": [
        {"role": "user", "content": f"사과가 {a}개 있어요."},
        {"role": "assistant", "content": "네, 알겠습니다. 무엇을 도와드릴까요?"},
        {"role": "user", "content": f"{b}개를 더 사면 모두 몇 개인가요?"},
        {"role": "assistant", "content": f"{a}개에 {b}개를 더하면 모두 {a + b}개입니다."},
    ]}


KINDS = [arithmetic, translate, city, explain, recipe, multiturn]


def main() -> None:
    rng = random.Random(20261128)
    rows = [KINDS[i % len(KINDS)](rng) for i in range(360)]
    rng.shuffle(rows)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} examples to {OUT}")


if __name__ == "__main__":
    main()
