"""How long `attnpick doctor` takes next to a bare `import torch`, measured side by side in one run.

Target: doctor (warm import cache) <= 1.5x `python -c "import torch"`. The cold run (first doctor after an
install, import checks in child processes) is printed too; it is not held to the target.

    .venv/bin/python benchmarks/doctor_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    env = dict(os.environ, ATTNPICK_CACHE_DIR=tempfile.mkdtemp(prefix="attnpick-bench-"))
    torch_cmd = [sys.executable, "-c", "import torch"]
    doctor_cmd = [sys.executable, "-m", "attnpick", "doctor", "--json"]

    cold = timed(doctor_cmd, env)
    torch_times, doctor_times = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        torch_times.append(timed(torch_cmd, env))
        doctor_times.append(timed(doctor_cmd, env))
    t, d = statistics.median(torch_times), statistics.median(doctor_times)
    print(f"import torch          median {t:.2f}s  (min {min(torch_times):.2f}, max {max(torch_times):.2f})")
    print(f"attnpick doctor warm  median {d:.2f}s  (min {min(doctor_times):.2f}, max {max(doctor_times):.2f})")
    print(f"attnpick doctor cold  {cold:.2f}s  (import checks of every installed package, cached afterwards)")
    ratio = d / t
    print(f"ratio doctor/torch    {ratio:.2f}x  (target <= 1.50x: {'met' if ratio <= 1.5 else 'NOT met'})")
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
