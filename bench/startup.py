#!/usr/bin/env python3
"""Pipe-mode start-up: CPU and wall time per `mailveil filter` process.

One process per mail is what sieve, procmail, maildrop and Postfix's pipe run, so the
start-up (loading the binary, the rules, the runtime) is paid on every mail. This runs
N processes of each binary given, alternating the binaries run by run (REPEAT runs
each), and prints every run's figures and the medians: CPU ms per process (user + sys
of the children, from getrusage) and wall ms per process. Timed here and not in a test:
speed is measured in benches (BRIEF.md).

usage: bench/startup.py [--n 100] [--repeat 5] NAME=BINARY [NAME=BINARY ...]
  cases: `filter` on a small plain mail (written here), `filter` on
  tests/fixtures/newsletter.eml, and `--version` (the floor of the process itself).
  CASES=small,newsletter,version picks some.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

SMALL = (
    "From: Alice <alice@example.org>\n"
    "To: reader@example.org\n"
    "Subject: lunch\n"
    "Message-ID: <small@example.org>\n"
    "Date: Fri, 04 Dec 2026 12:00:00 +0000\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "\n"
    "Lunch at noon tomorrow? The usual place.\n"
)

FILTER = ["filter", "--recipient", "reader@example.org"]


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(binary, args, stdin_path, n):
    """Per process: (CPU ms, wall ms) over n sequential processes."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    for _ in range(n):
        with open(stdin_path, "rb") as mail:
            p = subprocess.run(
                [binary, *args],
                stdin=mail,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        if p.returncode != 0:
            sys.exit(f"{binary} {' '.join(args)} exited {p.returncode}")
    wall = time.perf_counter() - t0
    cpu = children_cpu() - cpu0
    return cpu * 1000 / n, wall * 1000 / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("bins", nargs="+", metavar="NAME=BINARY")
    a = ap.parse_args()
    bins = [b.split("=", 1) for b in a.bins]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.NamedTemporaryFile("w", suffix=".eml", delete=False) as f:
        f.write(SMALL)
        small = f.name
    cases = {
        "small": (FILTER, small),
        "newsletter": (FILTER, os.path.join(root, "tests/fixtures/newsletter.eml")),
        "version": (["--version"], os.devnull),
    }
    wanted = os.environ.get("CASES", "small,newsletter,version").split(",")
    try:
        for case in wanted:
            args, stdin_path = cases[case]
            figures = {name: [] for name, _ in bins}
            for _ in range(a.repeat):
                for name, binary in bins:
                    figures[name].append(run(binary, args, stdin_path, a.n))
            print(f"{case} ({a.n} processes per run, {a.repeat} runs, alternated)")
            for name, _ in bins:
                cpu = [c for c, _ in figures[name]]
                wall = [w for _, w in figures[name]]
                print(
                    f"  {name:>8}: CPU ms {', '.join(f'{c:.2f}' for c in cpu)}: "
                    f"median {statistics.median(cpu):.2f}\n"
                    f"  {'':>8}  wall ms {', '.join(f'{w:.2f}' for w in wall)}: "
                    f"median {statistics.median(wall):.2f}"
                )
    finally:
        os.unlink(small)


if __name__ == "__main__":
    main()
