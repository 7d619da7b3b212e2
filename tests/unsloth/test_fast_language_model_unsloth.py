"""The guide's case 1 through attnpick's FastLanguageModel where Unsloth is installed and asked for: Unsloth's own
loader and Unsloth's own get_peft_model run (CPU mode here), and the LoRA trains and generates."""

from __future__ import annotations

import pytest

from tests.helpers import GUIDE, STEP, run_program

pytestmark = pytest.mark.unsloth

COUNT_UNSLOTH = """
    import unsloth
    from unsloth import FastLanguageModel as Unsloth

    calls = []
    original = Unsloth.get_peft_model

    def counted(*args, **kwargs):
        calls.append(sorted(kwargs))
        return original(*args, **kwargs)

    Unsloth.get_peft_model = staticmethod(counted)
"""


def test_the_guides_case_1_gets_unsloths_own_objects():
    result, stderr = run_program(COUNT_UNSLOTH, GUIDE, STEP, """
        print("RESULT " + json.dumps({"unsloth_get_peft_model_calls": len(calls),
                                      "lora_b_with_grad": len(with_grad),
                                      "new_tokens": out.shape[1] - prompt["input_ids"].shape[1],
                                      "chosen": report.chosen, "kernel": report.loader_kernel}))
    """, env={"ATTNPICK_BACKEND": "unsloth"})
    assert result["chosen"] == "unsloth" and result["kernel"] == "sdpa"  # Unsloth's CPU mode
    assert result["unsloth_get_peft_model_calls"] == 1
    assert result["lora_b_with_grad"] == 14 and result["new_tokens"] == 6
    assert "attnpick: tiny-exaone -> unsloth" in stderr
