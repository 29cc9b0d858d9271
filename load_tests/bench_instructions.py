"""Instructions per record of both stages, counted by valgrind: a deterministic A/B for pure-code
changes to the stages, where timings on a shared machine spread ±10% (see load_tests/RESULTS.md).

Run from the repository root (needs Debian's valgrind):

    .venv/bin/python -m load_tests.bench_instructions --records 20000

It runs the `bench_stages` workload twice and zero times under `valgrind --tool=cachegrind
--cache-sim=no` and reports (Ir(2 runs) - Ir(0 runs)) / (2 * records): start-up and message
generation cancel out. Compare two trees by running it in each.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys


def _inner(records: int, runs: int) -> None:
    from load_tests import bench_stages
    from pipeline.settings import Settings

    messages, _ = bench_stages._messages(records)
    settings = Settings.from_env({"WINDOW_SECONDS": "60"})
    for _ in range(runs):
        bench_stages._run(messages, settings)


def _instructions(records: int, runs: int) -> int:
    valgrind = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    cmd = [
        *valgrind,
        sys.executable,
        "-m",
        "load_tests.bench_instructions",
        "--inner",
        str(records),
        str(runs),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    match = re.search(r"I\s+refs:\s+([\d,]+)", out)
    if match is None:
        raise SystemExit(f"bench_instructions: no instruction count in valgrind's output:\n{out[-2000:]}")
    return int(match.group(1).replace(",", ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--inner", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        _inner(*args.inner)
        return 0
    if shutil.which("valgrind") is None:
        print("bench_instructions: needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    base = _instructions(args.records, 0)
    both = _instructions(args.records, 2)
    print(f"both stages: {round((both - base) / (2 * args.records)):,} instructions per record")
    return 0


if __name__ == "__main__":
    sys.exit(main())
