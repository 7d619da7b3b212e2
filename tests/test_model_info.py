import json

import pytest

from attnpick.errors import UsageError
from attnpick.model.config import model_facts, read_model_facts

EXAONE_35_24B = {
    "architectures": ["ExaoneForCausalLM"], "model_type": "exaone", "hidden_size": 2560, "num_layers": 30,
    "num_attention_heads": 32, "num_key_value_heads": 8, "auto_map": {"AutoModelForCausalLM": "x.Y"},
}


def test_exaone_shapes_from_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(EXAONE_35_24B))
    facts = read_model_facts(tmp_path)
    assert (facts.head_dim, facts.num_attention_heads, facts.num_key_value_heads) == (80, 32, 8)
    assert facts.remote_code and facts.model_type == "exaone"


def test_explicit_head_dim_softcap_sliding_window_and_sinks():
    facts = model_facts({"model_type": "gemma2", "hidden_size": 2304, "num_attention_heads": 8, "head_dim": 256,
                         "attn_logit_softcapping": 50.0, "sliding_window": 4096})
    assert facts.head_dim == 256 and facts.softcapping == 50.0 and facts.sliding_window == 4096
    assert model_facts({"model_type": "gpt_oss"}).has_sinks
    qwen = model_facts({"model_type": "qwen2", "sliding_window": 4096, "use_sliding_window": False})
    assert qwen.sliding_window is None


def test_nested_text_config():
    facts = model_facts({"model_type": "llava", "text_config": {"hidden_size": 4096, "num_attention_heads": 32}})
    assert facts.head_dim == 128 and facts.num_key_value_heads == 32


@pytest.mark.parametrize("setup, needle", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "has no config.json"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text("[1,")), "not valid JSON"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text("[1]")), "expected a JSON object"),
])
def test_bad_model_folders(tmp_path, setup, needle):
    folder = tmp_path / "model"
    setup(folder)
    with pytest.raises(UsageError, match=needle):
        read_model_facts(folder)
