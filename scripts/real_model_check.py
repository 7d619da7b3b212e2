"""The real-model lane's checks (docs/real-model.md), on a finished welcome run: held-out exact match before and
after training, the take-away models answering as the trained one (the merged folder in plain transformers, the
f16 and q8_0 GGUF files in llama.cpp), `attnpick chat`, packed against padded training, and a notebook-shaped
program (FastLanguageModel + TRL's SFTTrainer + train_on_responses_only). Prints a table, writes
RUN/real-model-check.json, and exits 1 when a target is missed.

    python scripts/real_model_check.py --model MODEL --run RUN --merged DIR --gguf DIR

Every model's answers come from a child process that imports transformers, peft or llama_cpp and not attnpick:
what is checked is the files, as a user's own program reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "examples" / "welcome" / "eval.jsonl"
MAX_NEW_TOKENS = 48
TARGETS = {"trained_em": 0.8, "base_em_max": 0.1, "merged_same": 1.0, "gguf_f16_same": 0.9, "packing_gap": 0.01}


def rows() -> list[tuple[list[dict], str]]:
    out = []
    for line in EVAL.read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        out.append((messages[:1], messages[1]["content"]))
    return out


# ---- children: transformers / peft / llama.cpp only ------------------------------------------------------------

def answers_transformers(folder: str, adapter: str | None) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(adapter or folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    tokenizer.padding_side = "left"  # one batch of every prompt, left-padded for generation
    texts = [tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False) for prompt, _ in rows()]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        seq = model.generate(**batch, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    width = batch["input_ids"].shape[1]
    return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in seq]


def answers_llama(gguf: str, tokenizer_folder: str) -> list[str]:
    import llama_cpp
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    llm = llama_cpp.Llama(gguf, n_ctx=256, n_threads=os.cpu_count() or 2, verbose=False)
    stop = {llm.token_eos(), tokenizer.eos_token_id}
    out = []
    try:
        for prompt, _ in rows():
            ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
            tokens: list[int] = []
            for token in llm.generate(ids["input_ids"], temp=0.0, top_k=1, reset=True):
                if token in stop or len(tokens) == MAX_NEW_TOKENS:
                    break
                tokens.append(token)
            out.append(tokenizer.decode(tokens, skip_special_tokens=True).strip())
    finally:
        llm.close()
    return out


def child(argv: list[str]) -> None:
    kind, *args = argv
    answers = answers_llama(*args) if kind == "llama" else answers_transformers(args[0], args[1] if len(args) > 1
                                                                                  else None)
    assert "attnpick" not in sys.modules, "the answers must come from the files alone"
    print(json.dumps(answers, ensure_ascii=False))


# ---- the checks -------------------------------------------------------------------------------------------------

def answers(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                          encoding="utf-8", env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if proc.returncode != 0:
        sys.exit(f"answers {args}: failed\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def attnpick(*args: str) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("attnpick"))
    print("+ attnpick " + " ".join(args), flush=True)
    proc = subprocess.run([exe, *args], capture_output=True, text=True, encoding="utf-8")
    if proc.returncode != 0:
        sys.exit(f"attnpick {args[0]} failed:\n{proc.stderr[-3000:]}")
    return proc


def exact(got: list[str]) -> int:
    return sum(a == want for a, (_, want) in zip(got, rows(), strict=True))


def same(a: list[str], b: list[str]) -> int:
    return sum(x == y for x, y in zip(a, b, strict=True))


def eval_loss(model: str, out: Path, packing: str, steps: int) -> float:
    attnpick("train", model, "--data", str(ROOT / "examples/welcome/train.jsonl"), "--eval-data", str(EVAL),
             "--max-steps", str(steps), "--packing", packing, "--output", str(out), "--json")
    return json.loads((out / "train_report.json").read_text())["eval_loss"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--merged", required=True, type=Path)
    parser.add_argument("--gguf", required=True, type=Path)
    parser.add_argument("--packing-steps", type=int, default=6)
    args = parser.parse_args()
    from attnpick.model.resolve import resolve

    start = time.time()
    base_folder = str(resolve(args.model)[0])
    n = len(rows())
    result: dict = {"eval_rows": n}
    base = answers("transformers", base_folder)
    trained = answers("transformers", base_folder, str(args.run / "adapter"))
    merged = answers("transformers", str(args.merged))
    f16 = answers("llama", str(next(args.gguf.glob("*[Ff]16*.gguf"))), str(args.merged))
    q8_dir = args.gguf.with_name(args.gguf.name + "-q8_0")
    if not q8_dir.exists():
        attnpick("export", str(args.run), "--format", "gguf", "--quantization", "q8_0", "--output", str(q8_dir))
    q8 = answers("llama", str(next(q8_dir.glob("*.gguf"))), str(args.merged))
    prompt, want = rows()[0]
    chat = attnpick("chat", str(args.run), "--prompt", prompt[0]["content"]).stdout.strip()
    report = json.loads((args.run / "train_report.json").read_text())
    scratch = args.run.with_name(args.run.name + "-check")
    packed = eval_loss(args.model, scratch / "packed", "on", args.packing_steps)
    padded = eval_loss(args.model, scratch / "padded", "off", args.packing_steps)
    print("+ python examples/welcome/notebook.py", flush=True)
    proc = subprocess.run([sys.executable, str(ROOT / "examples/welcome/notebook.py"), args.model,
                           str(scratch / "notebook")], capture_output=True, text=True, encoding="utf-8", cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"the notebook-shaped program failed:\n{proc.stderr[-3000:]}")
    notebook = answers("transformers", base_folder, str(scratch / "notebook"))
    result.update({
        "base_exact": exact(base), "trained_exact": exact(trained), "merged_same_as_trained": same(merged, trained),
        "gguf_f16_same_as_trained": same(f16, trained), "gguf_q8_0_same_as_trained": same(q8, trained),
        "chat_prompt": prompt[0]["content"], "chat_answer": chat, "chat_expected": want,
        "eval_losses": [list(x) for x in report["eval_losses"]], "backend": report["backend"],
        "quantization": report["quantization"], "dtype": report["dtype"], "tokens_per_s": report["tokens_per_s"],
        "packed_eval_loss": packed, "padded_eval_loss": padded,
        "packing_gap": abs(packed - padded) / padded, "packing_steps": args.packing_steps,
        "notebook_exact": exact(notebook), "seconds": round(time.time() - start, 1),
        "samples": {"base": base[:2], "trained": trained[:2]},
    })
    checks = [
        ("held-out exact match before training", f"{result['base_exact']}/{n}",
         result["base_exact"] <= TARGETS["base_em_max"] * n),
        ("held-out exact match after attnpick train", f"{result['trained_exact']}/{n}",
         result["trained_exact"] >= TARGETS["trained_em"] * n),
        ("eval loss, first -> last", f"{report['eval_losses'][0][1]:.4f} -> {report['eval_losses'][-1][1]:.4f}",
         report["eval_losses"][-1][1] < report["eval_losses"][0][1]),
        ("merged folder (plain transformers) = trained", f"{result['merged_same_as_trained']}/{n}",
         result["merged_same_as_trained"] >= TARGETS["merged_same"] * n),
        ("f16 GGUF (llama.cpp) = trained", f"{result['gguf_f16_same_as_trained']}/{n}",
         result["gguf_f16_same_as_trained"] >= TARGETS["gguf_f16_same"] * n),
        ("q8_0 GGUF (llama.cpp) = trained (reported)", f"{result['gguf_q8_0_same_as_trained']}/{n}", True),
        ("attnpick chat --prompt", repr(chat), chat == want),
        (f"eval loss packed / padded ({args.packing_steps} steps)", f"{packed:.4f} / {padded:.4f} "
         f"({100 * result['packing_gap']:.2f}%)", result["packing_gap"] <= TARGETS["packing_gap"]),
        ("notebook-shaped program (FastLanguageModel + SFTTrainer)", f"{result['notebook_exact']}/{n}",
         result["notebook_exact"] >= TARGETS["trained_em"] * n),
    ]
    result["checks"] = [{"check": c, "value": v, "ok": ok} for c, v, ok in checks]
    (args.run / "real-model-check.json").write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n",
                                                    encoding="utf-8")
    autocast = f", {report['autocast']} autocast" if report.get("autocast") else ""
    print(f"\nReal model: {args.model} ({report['backend']}, {report['dtype']}, "
          f"{report['quantization'] or 'no quantization'}{autocast}, {report['tokens_per_s']:.0f} tokens/s)")
    for check, value, ok in checks:
        print(f"  {'ok  ' if ok else 'MISS'}  {check:<58} {value}")
    print(f"checked in {result['seconds']:.0f}s; written to {args.run / 'real-model-check.json'}")
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        sys.exit(main())
