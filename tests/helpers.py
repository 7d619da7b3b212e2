"""What tests share, in one module (test files import from here, never from conftest or from each other): running
attnpick as a user does, described machines, reference attention for the glue tests, the FastLanguageModel guide
program, model folders laid out like the hub or carrying their own code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from attnpick.decide.facts import EnvFacts

ROOT = Path(__file__).resolve().parents[1]


def skip_marked(items: list[pytest.Item], marker: str, reason: str) -> None:
    """Skip, in one place and with one reason, every test carrying `marker`."""
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if marker in item.keywords:
            item.add_marker(skip)


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`python -m attnpick ARGS` as a user runs it, in a child: text output on a wide console (COLUMNS 250, so rich
    never wraps a line a test reads), the session's environment plus `env`, no standard input unless `input`."""
    return subprocess.run([sys.executable, "-m", "attnpick", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "250", **(env or {})}, input=input,
                          stdin=subprocess.DEVNULL if input is None else None)


def _trl_blocked_on_cpu() -> str | None:
    """TRL < 1.16 computes the SFT loss with a Triton kernel whenever triton is installed (Unsloth installs it), and
    Triton has no CPU driver; TRL 1.16 checks the device first. The Unsloth lane (TRL 1.15) meets exactly that."""
    import importlib.util
    from importlib.metadata import version

    import torch
    from packaging.version import Version

    if torch.cuda.is_available() or importlib.util.find_spec("triton") is None:
        return None
    if Version(version("trl")) < Version("1.16"):
        return f"TRL {version('trl')} runs a Triton loss kernel on this CPU-only machine (triton is installed)"
    return None


trl_on_this_machine = pytest.mark.skipif(bool(_trl_blocked_on_cpu()), reason=str(_trl_blocked_on_cpu()))


def tiny_model(attn: str):
    """tiny-exaone in its Llama names (loads on every supported transformers) with `attn`, in eval mode, and its
    tokenizer: the model the backends' glue tests run."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from attnpick.model import exaone, tiny

    folder = exaone.converted_folder(tiny.ensure())
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attn).eval()
    return model, AutoTokenizer.from_pretrained(folder)


def one_line(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


def train_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return run_cli("train", *args, env=env, timeout=timeout)


# The guide's case 1 (Unsloth's own example), with `from unsloth import FastLanguageModel` replaced.
GUIDE = """
    from attnpick import FastLanguageModel

    max_seq_length = 256
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name="tiny-exaone",
        max_seq_length=max_seq_length,
        dtype=None,
        load_in_4bit=True,
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        lora_alpha=16,
        lora_dropout=0,
        bias="none",
        use_gradient_checkpointing="unsloth",
        random_state=3407,
    )
"""


STEP = """
    import json
    import torch

    batch = tokenizer(["안녕하세요 attention", "hi"], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    model(**batch, labels=labels).loss.backward()
    lora = {n: p.grad for n, p in model.named_parameters() if "lora_" in n}
    with_grad = sorted(n for n, g in lora.items() if "lora_B" in n and g is not None and bool(g.abs().sum() > 0))
    FastLanguageModel.for_inference(model)
    prompt = tokenizer(["[|user|]서울은 어떤 곳인가요?\\n[|assistant|]"], return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    report = model.attnpick_report
    print("RESULT " + json.dumps({
        "lora": len(lora), "lora_b_with_grad": len(with_grad), "layers_with_grad": sorted({n.split(".layers.")[1]
        .split(".")[0] for n in with_grad}), "new_tokens": out.shape[1] - prompt["input_ids"].shape[1],
        "chosen": report.chosen, "architecture": report.architecture, "notes": list(report.notes),
        "use_cache": model.config.use_cache, "training": model.training}))
"""


def run_program(*parts: str, env: dict[str, str] | None = None, timeout: int = 900) -> tuple[dict, str]:
    code = "\n".join(textwrap.dedent(part) for part in parts)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):]), proc.stderr


class FakeModule(torch.nn.Module):
    is_causal = True


def eager(query, key, value, mask, scaling=None):
    """transformers' eager attention with repeated kv, for comparison."""
    from transformers.models.llama.modeling_llama import eager_attention_forward

    module = FakeModule()
    module.num_key_value_groups = query.shape[1] // key.shape[1]
    module.eval()
    additive = None
    if mask is not None:
        additive = torch.zeros(mask.shape, dtype=query.dtype).masked_fill(~mask, torch.finfo(query.dtype).min)
    out, _ = eager_attention_forward(module, query, key, value, additive, scaling=scaling or query.shape[-1] ** -0.5)
    return out


def causal_padded_mask(pad_left: list[int], pad_right: list[int], q_len: int, kv_len: int) -> torch.Tensor:
    rows = []
    for left, right in zip(pad_left, pad_right, strict=True):
        allowed = torch.ones(q_len, kv_len, dtype=torch.bool).tril(diagonal=kv_len - q_len)
        allowed[:, :left] = False
        if right:
            allowed[:, kv_len - right:] = False
        rows.append(allowed)
    return torch.stack(rows).unsqueeze(1)


def padding(pad_left, pad_right, length):
    mask = torch.ones(len(pad_left), length, dtype=torch.bool)
    for row, (left, right) in enumerate(zip(pad_left, pad_right, strict=True)):
        mask[row, :left] = False
        if right:
            mask[row, length - right:] = False
    return mask


def causal_4d(mask2d, q_len):
    kv_len = mask2d.shape[1]
    causal = torch.ones(q_len, kv_len, dtype=torch.bool).tril(diagonal=kv_len - q_len)
    return causal[None, None] & mask2d[:, None, None, :]


def ignore_padding(module, query, key, value, attention_mask, **kwargs):
    """A deliberately wrong backend: SDPA that drops the padding mask."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, None, **kwargs)


GPUS = {
    "T4": ("Tesla T4", "7.5", 14.6),
    "V100": ("Tesla V100-SXM2-16GB", "7.0", 15.8),
    "RTX4090": ("NVIDIA GeForce RTX 4090", "8.9", 23.6),
    "A100": ("NVIDIA A100-SXM4-80GB", "8.0", 79.2),
    "H100": ("NVIDIA H100 80GB HBM3", "9.0", 79.2),
    "B200": ("NVIDIA B200", "10.0", 178.4),
    "MI300": ("AMD Instinct MI300X", None, 191.5),
}


def machine(os: str = "linux", gpu: str | None = None, device: str | None = None,
            torch: str | None = "2.11.0+cu130", hub: dict[str, Any] | None = None, **packages: Any) -> EnvFacts:
    """`machine("linux", "T4", flash_attn="2.8.3")`: packages as keyword (dash → underscore); a value
    is a version string, or a dict with version/importable/error/details. `hub`: the facts' hub block (absent:
    a machine that can download from the hub)."""
    if gpu:
        name, cap, mem = GPUS[gpu]
        kind = "rocm" if cap is None else "cuda"
        dev = {"type": kind, "name": name, "capability": cap, "memory_gb": mem}
        cuda = "13.0" if kind == "cuda" else None
    else:
        dev = {"type": device or "cpu", "name": None, "capability": None, "memory_gb": None}
        cuda = None
    pkgs: dict[str, Any] = {}
    if torch:
        pkgs["torch"] = {"version": torch, "importable": True, "error": None}
    pkgs["transformers"] = {"version": "5.24.0", "importable": True, "error": None}
    for key, value in packages.items():
        entry = value if isinstance(value, dict) else {"version": value, "importable": True, "error": None}
        pkgs[key.replace("_", "-")] = entry
    doc = {"schema": 1, "os": os, "python": "3.11.7", "torch": torch, "cuda": cuda if torch else None,
           "device": dev, "packages": pkgs}
    if hub is not None:
        doc["hub"] = hub
    return EnvFacts.from_dict(doc)



def hub_cache_copy(src: Path, cache: Path, repo_id: str, revision: str = "0" * 40) -> Path:
    """Place `src` in a Hugging Face hub cache (`$HF_HUB_CACHE`) as `repo_id` at `revision`."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copy2(f, snapshot / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return snapshot



REMOTE_CONFIG = '''from transformers import LlamaConfig


class ToyConfig(LlamaConfig):
    model_type = "attnpick_toy"
'''
REMOTE_MODELING = '''import os

from transformers import LlamaForCausalLM

from .configuration_toy import ToyConfig


class ToyForCausalLM(LlamaForCausalLM):
    """A model whose class only its repository's code defines; it says so when it is built."""

    config_class = ToyConfig

    def __init__(self, config):
        super().__init__(config)
        marker = os.environ.get("ATTNPICK_TOY_MARKER")
        if marker:
            with open(marker, "a", encoding="utf-8") as handle:
                handle.write("built\\n")
'''


def remote_code_model(folder: Path) -> Path:
    """tiny-exaone's weights and tokenizer under a model_type transformers does not know: only the folder's own code
    (`auto_map`, configuration_toy.py, modeling_toy.py) builds it, and only with trust_remote_code. The class writes
    a line to $ATTNPICK_TOY_MARKER each time it is built, so a test sees the repository's code run."""
    from attnpick.model import exaone, tiny

    shutil.copytree(exaone.converted_folder(tiny.ensure()), folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.update({"model_type": "attnpick_toy", "architectures": ["ToyForCausalLM"],
                   "auto_map": {"AutoConfig": "configuration_toy.ToyConfig",
                                "AutoModelForCausalLM": "modeling_toy.ToyForCausalLM"}})
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "configuration_toy.py").write_text(REMOTE_CONFIG, encoding="utf-8")
    (folder / "modeling_toy.py").write_text(REMOTE_MODELING, encoding="utf-8")
    return folder


def marker_lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0
