"""Version strings, read one way everywhere: `release("2.11.0+cu130")` is `Version("2.11.0")` (the local build tag
dropped: a CUDA flavour does not change what a release supports), None when the text is not a version."""

from __future__ import annotations

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version


def release(version: str | None) -> Version | None:
    """The public release of `version`, or None when it does not parse."""
    if not version:
        return None
    try:
        return Version(version.partition("+")[0])
    except InvalidVersion:
        return None


def at_least(version: str | None, bound: str) -> bool:
    """`version`'s release is `bound` or later (False when it does not parse)."""
    have, need = release(version), release(bound)
    return have is not None and need is not None and have >= need


def in_range(version: str, specifier: str) -> bool:
    """`version` satisfies a PEP 440 range such as ">=2.3.3,<3" (False when either does not parse)."""
    try:
        return Version(version) in SpecifierSet(specifier)
    except (InvalidVersion, InvalidSpecifier):
        return False
