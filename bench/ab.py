"""A/B of the service's throughput: a commit against the work tree, alternating, in one run (python -m bench.ab).

On a shared machine the absolute figures drift by more than most changes are worth, so this compares within one
run: it unpacks the base commit's ``service`` and ``bench`` into a temporary directory (``git archive``; the work
tree, the index and the refs are not touched), then runs ``rounds`` pairs of child processes, base then work tree,
each measuring on fresh nats-servers the same-work loop (``bench.spine.same_work``) and then the service
(``bench.spine.service_throughput``). It prints, per run and as medians:

- the ratio service / same-work (the same-work loop is the in-run baseline: it moves with the machine's load);
- the process CPU per new sandbox (``time.process_time`` over the service run / N: the service, the bench's
  publisher and status watcher in one process; nats-server's CPU is not in it), which drifts far less with load
  than throughput does.

Nothing is asserted. Usage: ``python -m bench.ab d9d8089 --n 3000 --rounds 3``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def child(n: int) -> dict[str, float]:
    from bench import spine  # noqa: PLC0415 - imported from the tree PYTHONPATH names
    from sandboxd.cli.serving import tune_gc  # noqa: PLC0415 - idem

    tune_gc()
    same = await spine.same_work(n)
    spine.fresh_heap()
    started = time.process_time()
    service = await spine.service_throughput(n)
    cpu_ms = (time.process_time() - started) / n * 1000
    return {"same": same, "service": service, "ratio": service / same, "cpu_ms": cpu_ms}


def unpack(commit: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "service", "bench"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def run_child(tree: Path, n: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": f"{tree / 'service'}{os.pathsep}{tree}"}
    # This file runs in the child by path (the base tree may have no bench/ab.py); run_path puts nothing of
    # this tree on sys.path, so ``bench`` and ``sandboxd`` come from ``tree``.
    script = (
        f"import runpy, sys; sys.argv = ['ab', '--child', '--n', '{n}']; "
        f"runpy.run_path({str(__file__)!r}, run_name='__main__')"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return figures


def show(label: str, figures: dict[str, float]) -> None:
    print(
        f"{label:<6} same-work {figures['same']:7.0f}/s  service {figures['service']:7.0f}/s  "
        f"ratio {figures['ratio']:.2f}  CPU per sandbox {figures['cpu_ms']:.3f} ms",
        flush=True,
    )


def main(args: argparse.Namespace) -> None:
    if args.child:
        print(json.dumps(asyncio.run(child(args.n))))
        return
    runs: dict[str, list[dict[str, float]]] = {"base": [], "work": []}
    with tempfile.TemporaryDirectory() as tmp:
        unpack(args.base, Path(tmp))
        trees = {"base": Path(tmp), "work": ROOT}
        print(f"A/B: base {args.base} vs the work tree, N={args.n}, {args.rounds} rounds")
        for _ in range(args.rounds):
            for label, tree in trees.items():
                runs[label].append(run_child(tree, args.n))
                show(label, runs[label][-1])
    for label, figures in runs.items():
        medians = {key: statistics.median(f[key] for f in figures) for key in figures[0]}
        show(f"{label} median", medians)


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", nargs="?", default="HEAD", help="the commit to compare the work tree with")
    parser.add_argument("--n", type=int, default=3000, help="new sandboxes per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="base/work-tree pairs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    main(parser.parse_args(argv))


if __name__ == "__main__":
    cli()
