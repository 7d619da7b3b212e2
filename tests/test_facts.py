import pytest

from attnpick.decide.facts import EnvFacts
from attnpick.errors import UsageError
from tests.helpers import machine


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
    assert facts.device.capability_tuple == (9, 0)
    assert facts.device.type == "cuda" and facts.packages == {}


BASE = {"os": "linux", "torch": "2.11.0", "device": {"type": "cuda", "capability": "8.0"}}


@pytest.mark.parametrize("doc, needle", [
    ([], "the document must be a JSON object"),
    ({**BASE, "os": "beos"}, "'os' must be one of"),
    ({**BASE, "schema": 7}, "schema 7 is not supported"),
    ({**BASE, "device": {"type": "tpu"}}, "'device.type' must be one of"),
    ({**BASE, "device": {"type": "cuda", "capability": "sm80"}}, "'device.capability' must look like"),
    ({**BASE, "device": {"type": "cuda", "capability": "\u00b2.0"}}, "'device.capability' must look like"),
    ({**BASE, "device": {"type": "cuda", "memory_gb": "lots"}}, "'device.memory_gb' must be a finite number"),
    ({**BASE, "device": {"type": "cuda", "memory_gb": True}}, "'device.memory_gb' must be a finite number"),
    ({**BASE, "device": {"type": "cuda", "name": 4090}}, "'device.name' must be a string"),
    ({**BASE, "packages": []}, "'packages' must be a JSON object"),
    ({**BASE, "packages": {"xformers": "0.0.33"}}, "'packages.xformers' must be a JSON object"),
    ({**BASE, "packages": {"xformers": {"version": 33}}}, "'packages.xformers.version' must be a string"),
    ({**BASE, "packages": {"xformers": {"version": "1", "importable": "yes"}}}, "must be true, false or null"),
    ({**BASE, "packages": {"xformers": {"version": "1", "error": ["x"]}}}, "'packages.xformers.error' must be a"),
    ({**BASE, "torch": 2.11}, "'torch' must be a string or null"),
    ({**BASE, "python": 3.11}, "'python' must be a string or null"),
    ({**BASE, "sdpa_kernels": "flash"}, "'sdpa_kernels' must be a JSON array"),
    ({**BASE, "sdpa_kernels": [1]}, "'sdpa_kernels' must be a list of strings"),
    ({k: v for k, v in BASE.items() if k != "torch"}, "missing key 'torch'"),
    ({k: v for k, v in BASE.items() if k != "device"}, "missing key 'device'"),
    ({k: v for k, v in BASE.items() if k != "os"}, "missing key 'os'"),
    ({**BASE, "hub": []}, "'hub' must be a JSON object"),
    ({**BASE, "hub": {"offline": "yes"}}, "'hub.offline' must be true or false"),
    ({**BASE, "hub": {"cached": {"kernels-community/flash-attn2": ["4"]}}}, "list of kernel versions"),
    ({**BASE, "hub": {"flash_kernels": {"flash_attention_2": {"repo": 1}}}}, "needs a string 'repo'"),
    # issue 22: values of the right type but out of range, or versions that do not parse
    ({**BASE, "device": {"type": "cuda", "memory_gb": -1}}, "'device.memory_gb' must be a finite number of at least"),
    ({**BASE, "device": {"type": "cuda", "memory_gb": float("nan")}}, "'device.memory_gb' must be a finite number"),
    ({**BASE, "python": "x"}, "'python' must be a version"),
    ({**BASE, "torch": "not-a-version"}, "'torch' must be a version"),
    ({**BASE, "packages": {"xformers": {"version": "banana"}}}, "'packages.xformers.version' must be a version"),
    ({**BASE, "hub": {"kernels_range": "garbage!!"}}, "'hub.kernels_range' must be a version range"),
    ({**BASE, "hub": {"kernels_range": ""}}, "'hub.kernels_range' is empty"),  # issue 30: was read as no range
    ({**BASE, "hub": {"flash_kernels": {"flash_attention_2": {"repo": "r", "version": -1}}}}, "at least 0"),
    ({**BASE, "hub": {"cached": {"kernels-community/flash-attn2": [-4]}}}, "list of kernel versions"),
])
def test_malformed_documents_name_the_key(doc, needle):
    with pytest.raises(UsageError, match=needle):
        EnvFacts.from_dict(doc, where="m.json")


def test_hub_block_round_trips_and_is_optional():
    hub = {"offline": True, "reachable": None, "kernels_range": ">=0.18.2,<0.19.0",
           "flash_kernels": {"flash_attention_2": {"repo": "kernels-community/flash-attn2", "version": 4,
                                                   "devices": ["cuda", "xpu"]}},
           "cached": {"kernels-community/flash-attn2": [4]}, "local": {"kernels-community/flash-attn4": "/k"}}
    facts = EnvFacts.from_dict({**BASE, "hub": hub})
    assert facts.to_dict()["hub"] == hub and EnvFacts.from_dict(facts.to_dict()) == facts
    older = EnvFacts.from_dict(BASE)  # a file written before the hub block existed
    assert older.hub.offline is False and older.hub.reachable is None and older.hub.flash_kernels == {}


@pytest.mark.parametrize("system", ["msys_nt-10.0-19045", "MINGW64_NT-10.0-19045", "CYGWIN_NT-10.0", "Windows"])
def test_msys_mingw_and_cygwin_are_windows(system):
    from attnpick.decide.facts import normalize_os

    assert normalize_os(system) == "windows"
    assert EnvFacts.from_dict({**BASE, "os": system}, where="m.json").os == "windows"
