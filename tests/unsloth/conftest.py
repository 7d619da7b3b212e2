from importlib import metadata

import pytest


def _installed() -> bool:
    try:
        metadata.version("unsloth")
    except metadata.PackageNotFoundError:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _installed():
        return
    skip = pytest.mark.skip(reason="Unsloth is not installed here; the Unsloth lane of .ci/run runs these")
    for item in items:
        if "unsloth" in item.keywords:
            item.add_marker(skip)
