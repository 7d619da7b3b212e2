"""A smoke child that misbehaves for the backends named in $ATTNPICK_TEST_FAULTS ("sdpa=abort,eager=raise")
and runs the real smoke child for the others."""

import os
import sys
import time

from attnpick.load import _smoke_child


def main() -> int:
    import json

    job = json.loads(sys.argv[1])
    faults = dict(item.split("=") for item in os.environ.get("ATTNPICK_TEST_FAULTS", "").split(",") if item)
    fault = faults.get(job["backend"])
    if fault == "abort":
        os.abort()
    if fault == "hang":
        time.sleep(3600)
    if fault == "raise":
        job["attn_implementation"] = "no_such_attention"  # transformers raises on an unknown implementation
        return _smoke_child.main([json.dumps(job)])
    return _smoke_child.main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
