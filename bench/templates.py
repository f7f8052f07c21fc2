"""What the sandbox's limits cost: every shipped default template set rendered on the editor's
sample data (subject, text and html, as the sender renders them) N times, best of several runs.
Prints microseconds per message (wall and CPU); compare before/after a sandbox change in
the same hour (the machine's speed drifts from day to day).

    .venv/bin/python bench/templates.py [--count 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from switchboard.outbox.catalogue import MessageType, render_message, sample_variables  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="renders of every type per run")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    samples = [(t, sample_variables(t)) for t in MessageType]
    for message_type, variables in samples:  # compile once, as a running sender has
        render_message(message_type, variables)
    best = best_cpu = float("inf")
    for _ in range(args.runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        for _ in range(args.count):
            for message_type, variables in samples:
                render_message(message_type, variables)
        best = min(best, time.perf_counter() - started)
        # CPU time as well: the machine is shared, and wall time counts the others' work.
        best_cpu = min(best_cpu, time.process_time() - started_cpu)
    renders = args.count * len(samples)
    print(f"{len(samples)} default template sets x {args.count}: best of {args.runs} runs "
          f"{best:.2f} s, {best / renders * 1e6:.0f} us per message "
          f"({best_cpu / renders * 1e6:.0f} us CPU)")


if __name__ == "__main__":
    main()
