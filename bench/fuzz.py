"""The fuzzers of tests/test_fuzz.py, run for longer: mutated contract YAML and Parquet inputs.

    python bench/fuzz.py [--cases 2000] [--target both|yaml|parquet] [--seed 1] [--timeout 60]
                         [--heavy] [--memory-gb 3]

Each case copies the samples and a database holding a settled month, applies one mutation and
runs `settle run` for the next month through the CLI's boundary, in a child process (spawned
once, replaced when a case kills or hangs it), so that a crash, a hang (no answer within
--timeout seconds) or a memory blow-up (the child's address space is capped at --memory-gb) is
counted instead of stopping the run. `--heavy` adds the 30,000-deep nesting and the large alias
bomb that crash or exhaust an unbounded YAML loader.

Prints the cases tried, how many settled (exit 0) and were refused (exit 1), and every failure
class: tracebacks on the console, bug exits (70, by exception type), other exit codes, hangs,
crashes (the child killed by a signal) and partial writes (exit 1 with the database changed),
each with its count and one reproducible example (`--target T --only OP --seed S --cases 1`
replays it: the seed shown is the case's own). Ctrl-C ends the run early and prints the figures
so far.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.test_fuzz import PARQUET_OPS, YAML_OPS, make_base, run_case  # noqa: E402


def _worker(conn, base: str, scratch: str, heavy: bool, memory_gb: float) -> None:
    if memory_gb > 0:
        limit = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    while True:
        job = conn.recv()
        if job is None:
            return
        index, target, op, seed = job
        work = Path(scratch) / f"case{index}"
        work.mkdir()
        try:
            outcome = run_case(Path(base), work, target, op, seed, heavy)
            conn.send(
                (
                    outcome.what,
                    outcome.code,
                    outcome.output[-4000:],
                    outcome.db_changed,
                    outcome.hang,
                )
            )
        except BaseException as exc:  # the harness's own failure: report it as the case's
            conn.send((f"{op}: harness error {type(exc).__name__}: {exc}", None, "", False, False))
        finally:
            shutil.rmtree(work, ignore_errors=True)


class Pool:
    def __init__(self, base: Path, scratch: Path, heavy: bool, memory_gb: float):
        self.args = (str(base), str(scratch), heavy, memory_gb)
        self.ctx = mp.get_context("spawn")
        self.proc = None
        self.conn = None

    def start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, *self.args), daemon=True)
        self.proc.start()
        self.conn = parent

    def run(self, job, timeout: float):
        if self.proc is None or not self.proc.is_alive():
            self.start()
        self.conn.send(job)
        if self.conn.poll(timeout):
            try:
                return "done", self.conn.recv()
            except EOFError:
                pass
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
            return "hang", None
        self.proc.join()
        return "crash", self.proc.exitcode

    def stop(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()


def _last_error(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    return (errors or lines or [""])[-1][:300]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--target", choices=["both", "yaml", "parquet"], default="both")
    parser.add_argument("--only", default=None, help="Only this mutation (e.g. duplicate_key).")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0, help="Seconds per case.")
    parser.add_argument("--heavy", action="store_true")
    parser.add_argument("--memory-gb", type=float, default=3.0)
    opts = parser.parse_args()
    # a shell starts a background job with SIGINT ignored; `kill -INT` must still end it early
    signal.signal(signal.SIGINT, signal.default_int_handler)

    import os

    # the child's own alarm fires first; the parent's wait is the backstop for a stuck child
    os.environ["FUZZ_CASE_TIMEOUT_S"] = str(max(1, int(opts.timeout)))
    rng = random.Random(opts.seed)
    targets = ["yaml", "parquet"] if opts.target == "both" else [opts.target]
    jobs = []
    for i in range(opts.cases):
        target = targets[i % len(targets)]
        op = opts.only or rng.choice(YAML_OPS if target == "yaml" else PARQUET_OPS)
        seed = opts.seed if opts.cases == 1 else rng.randrange(2**31)
        jobs.append((i, target, op, seed))

    scratch = Path(tempfile.mkdtemp(prefix="settle-fuzz-"))
    started = time.perf_counter()
    codes: Counter = Counter()
    failures: dict[str, list[str]] = defaultdict(list)
    per_op: dict[str, Counter] = defaultdict(Counter)
    pool = Pool(make_base(scratch / "base"), scratch, opts.heavy, opts.memory_gb)
    tried = 0
    try:
        for n, job in enumerate(jobs, 1):
            tried = n
            _, target, op, seed = job
            state, value = pool.run(job, opts.timeout + 15)
            example = f"--target {target} --only {op} --seed {seed}"
            if state == "hang":
                codes["hang"] += 1
                failures[f"{target} {op}: hang (no answer in {opts.timeout:.0f}s)"].append(example)
                per_op[f"{target} {op}"]["hang"] += 1
                continue
            if state == "crash":
                codes["crash"] += 1
                failures[f"{target} {op}: child killed (exit {value})"].append(example)
                per_op[f"{target} {op}"]["crash"] += 1
                continue
            what, code, output, db_changed, hang = value
            problems = []
            if hang:
                problems.append(f"hang (over {opts.timeout:.0f}s)")
            elif code not in (0, 1):
                problems.append(f"exit {code}")
            if "Traceback" in output:
                problems.append("traceback")
            if code != 0 and db_changed:
                problems.append("partial write")
            codes["hang" if hang else code] += 1
            per_op[f"{target} {op}"]["hang" if hang else code] += 1
            if problems:
                detail = _last_error(output)
                bug = detail.split("not in your data): ", 1)[-1].split(":")[0] if code == 70 else ""
                key = f"{target} {op}: {', '.join(problems)}{' ' + bug if bug else ''}"
                failures[key].append(f"{example}  [{what}] {detail}")
            if n % 100 == 0:
                print(f"  {n} cases, {time.perf_counter() - started:.0f}s", file=sys.stderr)
    except KeyboardInterrupt:
        # Ctrl-C (or kill -INT) ends the run early and still prints what it found
        tried -= 1
        print(f"interrupted after {tried} cases", file=sys.stderr)
    finally:
        pool.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    took = time.perf_counter() - started
    total = tried
    bad = sum(len(v) for v in failures.values())
    print(f"cases tried:      {total} in {took:.0f}s ({took / max(total, 1):.2f}s a case)")
    print(f"settled (exit 0): {codes[0]}")
    print(f"refused (exit 1): {codes[1]}")
    print(f"bug exits (70):   {codes[70]}")
    print(f"hangs:            {codes['hang']}")
    print(f"crashes:          {codes['crash']}")
    tracebacks = sum(len(v) for k, v in failures.items() if "traceback" in k)
    partial = sum(len(v) for k, v in failures.items() if "partial write" in k)
    print(f"tracebacks:       {tracebacks}")
    print(f"partial writes:   {partial}")
    print(f"failing cases:    {bad}")
    if failures:
        print("\nfailure classes (count, one example):")
        for key, examples in sorted(failures.items(), key=lambda kv: -len(kv[1])):
            print(f"  {len(examples):5d}  {key}")
            print(f"         {examples[0]}")
    print("\nexit codes per mutation:")
    for op, counts in sorted(per_op.items()):
        print(f"  {op:<28} " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=str)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
