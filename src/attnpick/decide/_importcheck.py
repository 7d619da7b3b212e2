"""Child process: import each module named on the command line and report one JSON line per module.

Run as `python -m attnpick.decide._importcheck MODULE...` through `attnpick.util.subproc`. Results are marked lines
because some packages (Unsloth) print banners on import. Runs in a child so that a crash, a hang or a
patching import never touches the caller.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from attnpick.backends.registry import details_for_module
from attnpick.util.subproc import emit, error_line


def _transformers_details() -> dict[str, Any]:
    """The kernels versions this transformers loads hub kernels with, and its FlashAttention hub table."""
    from transformers.utils import import_utils

    details: dict[str, Any] = {}
    low, high = (getattr(import_utils, name, None) for name in ("KERNELS_MIN_VERSION", "KERNELS_MAX_VERSION"))
    if low and high:
        details["kernels_range"] = f">={low},<{high}"
    try:
        from transformers import modeling_flash_attention_utils as fa
        from transformers.integrations.hub_kernels import get_attn_kernel_version
    except Exception:  # noqa: BLE001 - releases before the kernels fallback have no table
        return details
    devices = getattr(fa, "FLASH_ATTN_KERNEL_DEVICES", None)
    details["flash_kernels"] = {
        impl: {"repo": repo, "version": get_attn_kernel_version(repo),
               "devices": list(devices.get(repo, ())) if devices is not None else None}
        for impl, repo in getattr(fa, "FLASH_ATTN_KERNEL_FALLBACK", {}).items()
    }
    return details


def _details(module: str) -> dict[str, Any]:
    if module == "transformers":
        return _transformers_details()
    return details_for_module(module)


def main(modules: list[str]) -> int:
    for module in modules:
        record: dict[str, Any] = {"module": module, "ok": True, "error": None, "details": {}}
        try:
            importlib.import_module(module)
            record["details"] = _details(module)
        except BaseException as exc:  # noqa: BLE001 - the text of any failure is the fact we report
            record["ok"] = False
            record["error"] = error_line(exc)
        emit(record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
