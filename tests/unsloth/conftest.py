from importlib import metadata

import pytest

from tests.helpers import skip_marked


def _installed() -> bool:
    try:
        metadata.version("unsloth")
    except metadata.PackageNotFoundError:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _installed():
        skip_marked(items, "unsloth", "Unsloth is not installed here; the Unsloth lane of .ci/run runs these")
