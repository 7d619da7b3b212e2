"""Child processes for tests/test_subproc.py: `python -m tests.children '<json job>'`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from attnpick.util.subproc import emit, serve


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    kind = job["do"]
    if job.get("pid_file"):
        Path(job["pid_file"]).write_text(str(__import__("os").getpid()))
    if kind == "hang":
        time.sleep(3600)
    if kind == "grandchild":  # a grandchild that holds our stdout pipe, and outlives us unless killed as a group
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"], stdout=sys.stdout)
        Path(job["grandchild_file"]).write_text(str(grandchild.pid))
        time.sleep(3600)
    if kind == "noise":
        print("Unsloth: patching your computer 🦥")
        print("ATTNPICK-RESULT {not json")
        emit({"ok": True, "value": 1})
        print("more noise after the result")
        return 0
    return serve(argv, lambda job: {"value": job.get("value")})


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
