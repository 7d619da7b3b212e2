"""Programs in the shape of Unsloth's text fine-tuning notebooks (examples/notebooks/: written for attnpick, in the
notebooks' shapes and calls, with `unsloth` -> `attnpick` in their import lines) run to the end on tiny-exaone with
a local data file in the notebook's format: conversational and Alpaca SFT, continued pretraining, FastModel, DPO and
the Ollama export. Each trains, generates and runs its save cells: the LoRA folder, a merged 16-bit folder and GGUF
files with an Ollama Modelfile where the notebook saves them. The merged folders load in plain transformers; in the
llama.cpp lane the GGUF files run in llama.cpp with the merged model's greedy tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import llama_cpp_run
from tests.helpers import trl_on_this_machine

NOTEBOOKS = Path(__file__).resolve().parents[1] / "examples" / "notebooks"
SCRIPTS = sorted(p.name for p in NOTEBOOKS.glob("*.py"))

TOPICS = [("서울의 명소", "경복궁과 남산타워가 유명합니다."), ("Fibonacci", "1, 1, 2, 3, 5, 8, 13, 21."),
          ("김치 만드는 법", "배추를 절이고 양념을 버무립니다."),
          ("What is LoRA?", "A low-rank update to frozen weights."),
          ("한국의 수도", "대한민국의 수도는 서울입니다."), ("Say hello", "Hello! How can I help you today?"),
          ("부산 여행", "해운대와 자갈치 시장을 가 보세요."), ("2 + 2", "2 + 2 = 4.")]


@dataclass(frozen=True)
class Saves:
    """What a notebook's save cells leave: its LoRA folder, its merged folder (or None), its GGUF files (in the merged
    folder, or in `gguf_folder`), and how many times it loads the model (the reload cell)."""

    lora: str = "lora_model"
    merged: str | None = "model"
    gguf: tuple[str, ...] = ("tiny-exaone.F16.gguf", "tiny-exaone.Q8_0.gguf")
    gguf_folder: str = "model"
    loads: int = 2


SAVES = {
    "continued_pretraining_korean.py": Saves(gguf=("tiny-exaone.Q8_0.gguf",), loads=1),
    "fastmodel_gemma3.py": Saves(lora="gemma-3", merged="gemma-3-finetune", gguf=("tiny-exaone.Q8_0.gguf",),
                                 gguf_folder="gemma-3-finetune", loads=1),
    "dpo_zephyr.py": Saves(gguf=(), loads=1),
    "ollama_llama3.py": Saves(merged=None, gguf=("tiny-exaone.Q8_0.gguf",), loads=1),
}


def _data(folder: Path) -> None:
    """Each notebook format's file, 16 rows: ShareGPT conversations, Alpaca rows, chat messages, raw Korean text,
    preference pairs."""
    rows = [TOPICS[i % len(TOPICS)] for i in range(16)]
    lines = {"conversations.jsonl": [{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]}
                                     for q, a in rows],
             "alpaca.jsonl": [{"instruction": q, "input": "" if i % 2 else "짧게 답하세요.", "output": a}
                              for i, (q, a) in enumerate(rows)],
             "messages.jsonl": [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
                                for q, a in rows],
             "korean_wiki.jsonl": [{"text": f"{q}: {a} 한국의 역사와 문화에 관한 글입니다."} for q, a in rows],
             "preferences.jsonl": [{"prompt": q, "chosen": a, "rejected": "모르겠습니다."} for q, a in rows]}
    for name, items in lines.items():
        (folder / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), encoding="utf-8")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every script run once in its own folder: {script: (folder, completed process)}."""
    out = {}
    for script in SCRIPTS:
        folder = tmp_path_factory.mktemp(script.removesuffix(".py"))
        _data(folder)
        proc = subprocess.run([sys.executable, str(NOTEBOOKS / script)], cwd=folder, capture_output=True, text=True,
                              timeout=900, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL)
        out[script] = (folder, proc)
    return out


def test_every_notebook_kind_has_a_program():
    kinds = ("alpaca", "conversational", "continued_pretraining", "fastmodel", "dpo", "ollama")
    assert all(any(kind in s for s in SCRIPTS) for kind in kinds), SCRIPTS
    for script in SCRIPTS:
        imports = [line for line in (NOTEBOOKS / script).read_text(encoding="utf-8").splitlines()
                   if line.startswith(("from ", "import "))]
        assert not any("unsloth" in line.split("#")[0] for line in imports), script


@trl_on_this_machine
@pytest.mark.parametrize("script", SCRIPTS)
def test_the_notebook_runs_to_the_end_and_leaves_what_its_save_cells_write(runs, script):
    folder, proc = runs[script]
    saves = SAVES.get(script, Saves())
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    assert (folder / saves.lora / "adapter_config.json").is_file()
    assert proc.stderr.count("attnpick: tiny-exaone -> ") == saves.loads, proc.stderr[-2000:]
    if saves.merged:
        config = json.loads((folder / saves.merged / "config.json").read_text())
        assert config["model_type"] == "exaone" and list((folder / saves.merged).glob("*.safetensors"))
    gguf = folder / saves.gguf_folder
    assert sorted(p.name for p in gguf.glob("*.gguf")) == sorted(saves.gguf)
    if saves.gguf:  # with every GGUF export, an Ollama Modelfile for it
        modelfile = (gguf / "Modelfile").read_text(encoding="utf-8")
        source = modelfile.splitlines()[0]  # the last save cell's file
        assert source in [f"FROM ./{name}" for name in saves.gguf] and 'TEMPLATE """' in modelfile


@trl_on_this_machine
def test_the_merged_folders_load_in_plain_transformers(runs):
    """attnpick not imported: what the user hands on loads with transformers alone (native EXAONE from 5.24)."""
    from packaging.version import Version
    from transformers import __version__

    if Version(__version__) < Version("5.24"):
        pytest.skip("transformers < 5.24 has no EXAONE class")
    merged = {script: SAVES.get(script, Saves()).merged for script in SCRIPTS}
    folders = [str(folder / merged[script]) for script, (folder, proc) in runs.items()
               if proc.returncode == 0 and merged[script]]
    code = ("import sys, torch\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f"for f in {folders!r}:\n"
            "    m = AutoModelForCausalLM.from_pretrained(f).eval(); t = AutoTokenizer.from_pretrained(f)\n"
            "    ids = t.apply_chat_template([{'role': 'user', 'content': '안녕'}], add_generation_prompt=True,"
            " return_tensors='pt', return_dict=True)\n"
            "    assert m.generate(**ids, max_new_tokens=4, do_sample=False).shape[1] > ids['input_ids'].shape[1]\n"
            "assert 'attnpick' not in sys.modules\nprint(len(sys.argv))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and len(folders) == sum(1 for m in merged.values() if m), proc.stderr[-3000:]


@trl_on_this_machine
@pytest.mark.llama_cpp
@pytest.mark.parametrize("script", SCRIPTS)
def test_the_notebooks_gguf_files_run_in_llama_cpp_with_the_merged_models_tokens(runs, script):
    from transformers import AutoTokenizer

    folder, proc = runs[script]
    assert proc.returncode == 0, proc.stderr[-3000:]
    saves = SAVES.get(script, Saves())
    if not saves.merged or saves.gguf_folder != saves.merged or not saves.gguf:
        pytest.skip("this notebook saves no merged folder beside its GGUF files")
    merged = folder / saves.merged
    tok = AutoTokenizer.from_pretrained(str(merged))
    ids = tok.apply_chat_template([{"role": "user", "content": "서울의 명소를 알려 주세요."}], tokenize=True,
                                  add_generation_prompt=True, return_dict=False)
    files = {name.split(".")[-2].lower(): merged / name for name in saves.gguf}
    llama_cpp_run.check_against_merged(files, merged, ids)
