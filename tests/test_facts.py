import pytest

from attnpick.errors import UsageError
from attnpick.facts import EnvFacts
from tests.machines import machine


def test_round_trip():
    facts = machine("windows", "RTX4090", xformers={"version": "0.0.33", "importable": True,
                                                    "details": {"cpp_library": True}})
    again = EnvFacts.from_dict(facts.to_dict())
    assert again == facts
    assert again.device.capability_tuple == (8, 9)


def test_absent_package_counts_as_not_installed():
    facts = machine("linux")
    assert facts.package("flash-attn").version is None
    assert facts.package("flash-attn").importable is None


def test_minimal_document_is_enough():
    facts = EnvFacts.from_dict({"os": "linux", "torch": "2.11.0", "device": {"type": "cuda", "capability": "9.0"}})
    assert facts.device.type == "cuda" and facts.packages == {}


@pytest.mark.parametrize("doc, needle", [
    ([], "the document must be a JSON object"),
    ({"os": "beos"}, "'os' must be one of"),
    ({"os": "linux", "schema": 7}, "schema 7 is not supported"),
    ({"os": "linux", "device": {"type": "tpu"}}, "'device.type' must be one of"),
    ({"os": "linux", "device": {"type": "cuda", "capability": "sm80"}}, "'device.capability' must look like"),
    ({"os": "linux", "device": {"type": "cuda", "memory_gb": "lots"}}, "'device.memory_gb' must be a number"),
    ({"os": "linux", "packages": []}, "'packages' must be a JSON object"),
    ({"os": "linux", "packages": {"xformers": "0.0.33"}}, "'packages.xformers' must be a JSON object"),
    ({"os": "linux", "packages": {"xformers": {"version": 33}}}, "'packages.xformers.version' must be a string"),
    ({"os": "linux", "packages": {"xformers": {"version": "1", "importable": "yes"}}}, "must be true, false or null"),
    ({"os": "linux", "torch": 2.11}, "'torch' must be a string or null"),
])
def test_malformed_documents_name_the_key(doc, needle):
    with pytest.raises(UsageError, match=needle):
        EnvFacts.from_dict(doc, where="m.json")
