"""`make bench`: Settle at portfolio scale.

    python bench/run.py [--contracts 1000] [--data DIR] [--repeat 3] [--parts i,month,cli,...]

Generates the portfolio first if it is missing (bench/generate.py: N contracts x 36 months and 10M
interactions in the last month; bench/data/ for 1,000, bench/data-N/ otherwise). Then:

  i      the full 36-month backfill `settle` of every contract against `validate` on the same
         inputs, in this process (target: within 1.5x);
  month  2024-01..2026-11 settled and closed, then the month-end run of 2026-12, against the same
         validate (target: within 1.5x);
  hist   the month-end again with 12 months of interactions on disk (11 closed months of 10M
         generated once into DIR/hist/, beside the open month's) against the month part's with
         the open month's alone (target: within 1.1x: closed months' files are not opened);
  cli    both again as separate `settle` processes, each with its own peak RSS (target: within
         1.5x; peak RSS under 2 GB);
  loop   the backfill against bench/plain_loop.py, the per-contract Decimal loop a user would
         write by hand, whose lines are checked one by one against the engine's (target: the
         engine at least 5x faster, 10x the aim);
  ii     the measured-KPI step (the one scan of the interaction files that validates and counts
         them, the rule tests, and sql/05_measures.sql) against a bare DuckDB GROUP BY over the
         same files (target: within 1.3x);
  iii    the backfill's pricing (sql/04_pricing.sql) against a per-contract pandas loop
         (bench/pricing_pandas.py), its lines checked against the SQL's (target: SQL >= 50x);

and prints the machine, the ratios, wall and CPU times, row counts and peak memory. CPU time is
shown beside wall time because a shared machine's wall clock moves with its neighbours; the
ratios use wall time, best of --repeat where a step is repeated.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import generate  # noqa: E402
import plain_loop  # noqa: E402
import pricing_pandas  # noqa: E402

from pipelines import engine  # noqa: E402
from pipelines.contract_cache import load_contracts  # noqa: E402
from pipelines.inputs import InputSet, read_inputs  # noqa: E402
from pipelines.interactions import check_interactions, register_interactions  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Timer:
    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


class Marks:
    """A progress callback that keeps each message with the moment it came."""

    def __init__(self, marks: list[tuple[float, str]]) -> None:
        self.marks = marks

    def __call__(self, message: str) -> None:
        self.marks.append((time.perf_counter(), message))


def best(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Best wall and CPU time of `repeat` runs, and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        with Timer() as t:
            result = fn()
        walls.append(t.wall)
        cpus.append(t.cpu)
    return min(walls), min(cpus), result


def line(label: str, wall: float, cpu: float | None = None, note: str = "") -> None:
    cpu_text = f"{cpu:8.2f}s cpu" if cpu is not None else " " * 12
    print(f"  {label:<46} {wall:8.2f}s wall {cpu_text}  {note}")


def verdict(ratio: float, target: float, higher_is_better: bool = False) -> str:
    ok = ratio >= target if higher_is_better else ratio <= target
    return f"{'meets' if ok else 'MISSES'} target {'>=' if higher_is_better else '<='} {target}x"


# --------------------------------------------------------------------------- (i) backfill


def backfill(contracts: Path, data: Path, db: Path, repeat: int) -> dict:
    print("\n(i) full backfill settle vs validate")
    validate_wall, validate_cpu, counts = best(lambda: engine.validate(contracts, data), repeat)
    line("validate (configs, inputs, referential, scan)", validate_wall, validate_cpu)
    with Timer() as c:
        load_contracts(contracts)
    with Timer() as i:
        read_inputs(data)
    print(f"      of which contract YAML {c.wall:.2f}s, input files {i.wall:.2f}s")

    request = engine.RunRequest(generate.MONTHS[0], generate.MONTHS[-1])
    runs = []
    for _ in range(repeat):  # each settle into a fresh database: a first backfill every time
        db.unlink(missing_ok=True)
        marks: list[tuple[float, str]] = []
        with Timer() as s:
            result = engine.settle(contracts, data, db, request, Marks(marks))
        runs.append((s, marks, result))
    s, marks, result = min(runs, key=lambda r: r[0].wall)
    line("settle 2024-01..2026-12, all contracts", s.wall, s.cpu)
    steps = {}
    for _, message in marks:
        match = re.match(r"\s+(\d\d_\w+)\s+([\d.]+)s", message)
        if match:
            steps[match.group(1)] = float(match.group(2))
    # phases from the progress marks: loading, registering and checking (incl. the interaction
    # scan), the settlement SQL, and storing the results
    validated = next(t for t, m in marks if m.startswith("validated"))
    first_step = next(t for t, m in marks if m.startswith("  01_"))
    last_step = next(t for t, m in marks if m.startswith("  11_"))
    started = marks[0][0] - float(re.search(r"\(([\d.]+)s\)", marks[0][1]).group(1))
    phases = {
        "load configs and inputs": validated - started,
        "register, check, scan interactions": first_step - validated - steps.get("01_macros", 0),
        "settlement SQL (01..11)": sum(steps.values()),
        "store results, summarise": marks[-1][0] - last_step,
    }
    for name, seconds in phases.items():
        print(f"      {name:<36} {seconds:6.2f}s")
    print("      " + ", ".join(f"{k} {v:.2f}s" for k, v in steps.items()))
    ratio = s.wall / validate_wall
    print(
        f"  ratio settle / validate: {ratio:.2f}x  ({verdict(ratio, 1.5)}); "
        f"in CPU time {s.cpu / validate_cpu:.2f}x"
    )
    with duckdb.connect(str(db), read_only=True) as con:
        count = "SELECT count(*) FROM {} WHERE run_id = ?"
        stored = {
            t: con.execute(count.format(t), [result.run_id]).fetchone()[0]
            for t in ("charge_lines", "kpi_results", "service_credits", "invoice_lines",
                      "invoice_reconciliation", "gain_share")
        }  # fmt: skip
    print(f"  inputs: {counts}")
    print(f"  stored: {stored}; {result.written_months:,} contract-months written")
    print(f"  peak memory so far: {peak_mb():,.0f} MB")
    return {
        "ratio": ratio,
        "cpu_ratio": s.cpu / validate_cpu,
        "steps": steps,
        "validate": validate_wall,
        "validate_cpu": validate_cpu,
        "wall": s.wall,
    }


# --------------------------------------------------------------------------- machine


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as handle:
        names = [ln.split(":", 1)[1].strip() for ln in handle if ln.startswith("model name")]
    cpu = names[0] if names else cpu
    with open("/proc/meminfo") as handle:
        total_kb = int(next(ln for ln in handle if ln.startswith("MemTotal")).split()[1])
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores ({cpu}), {total_kb / 2**20:.0f} GB RAM, load "
        f"{load[0]:.1f}/{load[1]:.1f}; Python {platform.python_version()}, duckdb "
        f"{duckdb.__version__}; SETTLE_MEMORY_LIMIT="
        f"{engine.memory_settings()['memory_limit']}"
    )


# --------------------------------------------------------------------------- month-end


def month_end(
    contracts: Path, data: Path, db: Path, validate_wall: float, validate_cpu: float, close: bool
):
    """The history settled and closed up to the month before the last, then the last month's
    month-end run, against validate of the same inputs."""
    print("\n(i-b) month-end settle vs validate (in this process)")
    db.unlink(missing_ok=True)
    last, before = generate.MONTHS[-1], generate.MONTHS[-2]
    with Timer() as h:
        engine.settle(contracts, data, db, engine.RunRequest(generate.MONTHS[0], before))
        if close:
            # no invoice of the generated history is approved: closing is gated (SPEC 11)
            engine.close(db, generate.MONTHS[0], to=before, force=True)
    done = "settled and closed" if close else "settled"
    line(f"history {generate.MONTHS[0]:%Y-%m}..{before:%Y-%m} {done}", h.wall, h.cpu)
    with Timer() as m:
        result = engine.settle(contracts, data, db, engine.RunRequest(last, last))
    line(f"month-end {last:%Y-%m} ({result.written_months:,} contract-months)", m.wall, m.cpu)
    ratio = m.wall / validate_wall
    print(
        f"  ratio month-end / validate: {ratio:.2f}x  ({verdict(ratio, 1.5)}); "
        f"in CPU time {m.cpu / validate_cpu:.2f}x"
    )
    print(f"  peak memory so far: {peak_mb():,.0f} MB")
    return {"ratio": ratio, "cpu_ratio": m.cpu / validate_cpu, "wall": m.wall, "cpu": m.cpu}


# --------------------------------------------------------------------------- history on disk


def history_on_disk(
    contracts: Path, data: Path, work: Path, months: int, rows: int, one_month: dict, close: bool
) -> dict:
    """The month-end again with `months` months of interactions on disk (the open month's files
    plus months - 1 closed months of `rows` each, generated once into `work`), against the
    month-end with the open month's alone (`one_month`, from the `month` part)."""
    print(f"\n(hist) month-end with {months} months of interactions on disk vs the open month's")
    last, before = generate.MONTHS[-1], generate.MONTHS[-2]
    inputs = work / "inputs"
    stamp = work / f"generated-{months}x{rows}"
    if not stamp.exists():
        shutil.rmtree(work, ignore_errors=True)
        (inputs / "interactions").mkdir(parents=True)
        for folder in data.iterdir():
            if folder.name != "interactions":
                (inputs / folder.name).symlink_to(folder.resolve())
        (inputs / "interactions" / f"period={last:%Y-%m}").symlink_to(
            (data / "interactions" / f"period={last:%Y-%m}").resolve()
        )
        portfolio = generate.Portfolio(len(list(contracts.glob("*.yaml"))), generate.SEED)
        with Timer() as g:
            for k, month in enumerate(generate.MONTHS[-months:-1]):
                generate.write_interactions(
                    portfolio, inputs / "interactions", rows, generate.SEED + 100 + k, month
                )
        line(f"generated {months - 1} closed months x {rows:,} interactions (once)", g.wall, g.cpu)
        stamp.touch()
    db = work / "bench-hist.duckdb"
    db.unlink(missing_ok=True)
    with Timer() as h:
        engine.settle(contracts, inputs, db, engine.RunRequest(generate.MONTHS[0], before))
        if close:
            engine.close(db, generate.MONTHS[0], to=before, force=True)
    line(f"history settled{' and closed' if close else ''} (reads every month)", h.wall, h.cpu)
    with Timer() as m:
        engine.settle(contracts, inputs, db, engine.RunRequest(last, last))
    line(f"month-end {last:%Y-%m}, {months} months on disk", m.wall, m.cpu)
    line(f"month-end {last:%Y-%m}, the open month alone (month part)", one_month["wall"],
         one_month["cpu"])  # fmt: skip
    ratio = m.wall / one_month["wall"]
    cpu_ratio = m.cpu / one_month["cpu"]
    print(f"  ratio: {ratio:.2f}x ({verdict(ratio, 1.1)}); in CPU time {cpu_ratio:.2f}x")
    return {"ratio": ratio, "cpu_ratio": cpu_ratio}


# --------------------------------------------------------------------------- CLI processes


# A child's ru_maxrss on Linux starts from the memory of the process that forked it (it is kept
# across exec), so each command is started by a small fresh Python that reports its child's peak.
_SPAWN = (
    "import os, sys, resource\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execv(sys.argv[1], sys.argv[1:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "print(usage.ru_maxrss, usage.ru_utime + usage.ru_stime, file=sys.stderr)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def _cli(args: list[str]) -> tuple[float, float, float]:
    """One `settle` command as its own process: wall seconds, peak RSS in MB, CPU seconds."""
    settle_bin = Path(sys.executable).with_name("settle")
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-S", "-c", _SPAWN, str(settle_bin), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"settle {' '.join(args)} failed: {proc.stderr}")
    rss, cpu = proc.stderr.strip().splitlines()[-1].split()
    return wall, int(rss) / 1024, float(cpu)


def cli(contracts: Path, data: Path, db: Path, close: bool) -> dict:
    print("\n(cli) the same as separate `settle` processes (wall, peak RSS of each)")
    common = ["--contracts", str(contracts), "--data", str(data), "--db", str(db)]
    first, before, last = (f"{generate.MONTHS[i]:%Y-%m}" for i in (0, -2, -1))
    validate = _cli(["validate", "--contracts", str(contracts), "--data", str(data)])
    line("settle validate", validate[0], validate[2], note=f"{validate[1]:,.0f} MB")
    db.unlink(missing_ok=True)
    backfill = _cli(["run", "--period", first, "--to", last, *common])
    line(f"settle run --period {first} --to {last} (fresh db)", backfill[0], backfill[2],
         note=f"{backfill[1]:,.0f} MB")  # fmt: skip
    db.unlink(missing_ok=True)
    _cli(["run", "--period", first, "--to", before, *common])
    if close:
        _cli(["close", "--period", first, "--to", before, "--force", *common])
    month = _cli(["run", "--period", last, *common])
    done = "closed" if close else "settled"
    line(f"settle run --period {last} (history {done})", month[0], month[2],
         note=f"{month[1]:,.0f} MB")  # fmt: skip
    ratios = {"backfill": backfill[0] / validate[0], "month_end": month[0] / validate[0]}
    for name, ratio in ratios.items():
        cpu = (backfill if name == "backfill" else month)[2] / validate[2]
        print(f"  ratio {name} / validate: {ratio:.2f}x ({verdict(ratio, 1.5)}); CPU {cpu:.2f}x")
    ratios["backfill_cpu"] = backfill[2] / validate[2]
    ratios["month_end_cpu"] = month[2] / validate[2]
    peak = max(validate[1], backfill[1], month[1])
    return {**ratios, "backfill_wall": backfill[0], "peak_mb": peak, "backfill_mb": backfill[1]}


# --------------------------------------------------------------------------- the plain loop


def loop(contracts: Path, data: Path, db: Path, backfill_wall: float, cli_wall: float | None):
    print("\n(loop) the full backfill against a plain per-contract Decimal loop")
    result = plain_loop.run(contracts, data, db, generate.MONTHS[-1])
    for name, seconds in result["timings"].items():
        line(f"plain loop: {name}", seconds)
    total = sum(result["timings"].values())
    line("plain loop: total (what its author would time)", total)
    print(
        f"  loop: {result['lines']:,} charge lines and {result['credits']:,} at-risk credits; "
        f"differing from the engine's: {len(result['charge_differences'])} charge lines, "
        f"{len(result['credit_differences'])} credits"
        + (f" (first: {result['charge_differences'][:3]})" if result["charge_differences"] else "")
    )
    ratio = total / backfill_wall
    print(f"  ratio loop / engine backfill (in process): {ratio:.2f}x "
          f"({verdict(ratio, 5, higher_is_better=True)}; the aim is 10x)")  # fmt: skip
    out = {"ratio": ratio, "differ": len(result["charge_differences"])
           + len(result["credit_differences"])}  # fmt: skip
    if cli_wall is not None:
        out["ratio_cli"] = total / cli_wall
        print(f"  ratio loop / engine backfill (CLI process): {out['ratio_cli']:.2f}x")
    print(f"  peak memory so far: {peak_mb():,.0f} MB")
    return out


# --------------------------------------------------------------------------- shared set-up


def prepared(contracts: Path, data: Path) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """An in-memory connection set up as settle() sets one up, without the interaction scan."""
    loaded, inputs = engine.load(contracts, data)
    con = duckdb.connect()
    engine.ensure_schema(con)
    engine.run_script(con, engine.SQL_DIR / "01_macros.sql")
    engine.register_terms(con, loaded)
    engine.register_inputs(con, InputSet(inputs.data_dir, inputs.frames))  # no interactions yet
    con.execute(
        "CREATE TEMP TABLE run_params AS SELECT ?::DATE AS period_from, ?::DATE AS period_to, "
        "far_future() AS as_known_at, 'settle' AS mode",
        [generate.MONTHS[0], generate.MONTHS[-1]],
    )
    con.execute("CREATE TEMP TABLE run_contracts AS SELECT contract_id FROM cfg_contracts")
    engine.run_script(con, engine.SQL_DIR / "02_calendar.sql")
    return con, inputs.interaction_files


# --------------------------------------------------------------------------- (ii) measures


def measures(con: duckdb.DuckDBPyConnection, files: list[str], repeat: int) -> dict:
    print("\n(ii) measured-KPI step vs a bare GROUP BY over the interaction files")
    listing = ", ".join(f"'{f}'" for f in files)
    rows = con.execute(f"SELECT count(*) FROM read_parquet([{listing}])").fetchone()[0]
    source = f"read_parquet([{listing}])"
    bare_count = (
        f"SELECT contract_id, service_line_id, date_trunc('month', arrived_at) AS period, "
        f"count(*) FROM {source} GROUP BY ALL"
    )
    bare_columns = (
        f"SELECT contract_id, service_line_id, date_trunc('month', arrived_at) AS period, "
        f"count(*), count(answered_at), count(abandoned_at), sum(handle_s), "
        f"count_if(first_contact_resolved), sum(csat) FROM {source} GROUP BY ALL"
    )
    # the counts the portfolio's KPIs need, as one would write them by hand for these contracts:
    # no validation, no exclusion windows
    answered_s, abandoned_s = (
        [r[0] for r in con.execute(q).fetchall()]
        for q in (
            "SELECT DISTINCT threshold_s FROM cfg_kpi_measures WHERE metric = 'service_level'",
            "SELECT DISTINCT threshold_s FROM cfg_kpi_measures WHERE abandons IN "
            "('count_as_met', 'exclude_within_threshold') UNION SELECT DISTINCT short_abandon_s "
            "FROM cfg_kpi_measures WHERE abandons = 'exclude_short'",
        )
    )
    within = ", ".join(
        [f"count_if(answer_us <= {s * 1_000_000})" for s in answered_s]
        + [f"count_if(abandon_us <= {s * 1_000_000})" for s in abandoned_s]
    )
    bare_counts = (
        f"SELECT contract_id, service_line_id, date_trunc('month', arrived_at) AS period, "
        f"count(*), count(answer_us), count(abandon_us), sum(answer_us), {within}, "
        f"count(handle_s) FILTER (answer_us IS NOT NULL), "
        f"sum(handle_s) FILTER (answer_us IS NOT NULL), count(first_contact_resolved), "
        f"count_if(first_contact_resolved), count(csat), sum(csat), count_if(csat >= 4) "
        f"FROM (SELECT *, epoch_us(answered_at) - epoch_us(arrived_at) AS answer_us, "
        f"epoch_us(abandoned_at) - epoch_us(arrived_at) AS abandon_us FROM {source}) "
        f"GROUP BY ALL"
    )
    step = {"scan": [], "rules": [], "measures": []}

    def measured_step() -> None:
        with Timer() as a:
            register_interactions(con, files)
        with Timer() as b:
            check_interactions(con)
        with Timer() as c:
            engine.run_script(con, engine.SQL_DIR / "05_measures.sql")
        step["scan"].append(a.wall)
        step["rules"].append(b.wall)
        step["measures"].append(c.wall)

    timings = {}
    for _ in range(repeat):  # interleaved, so that a noisy neighbour hits every query alike
        for name, fn in (
            ("bare_count", lambda: con.execute(bare_count).fetchall()),
            ("bare_columns", lambda: con.execute(bare_columns).fetchall()),
            ("bare_counts", lambda: con.execute(bare_counts).fetchall()),
            ("step", measured_step),
        ):
            with Timer() as t:
                fn()
            w, c = timings.get(name, (9e9, 9e9))
            timings[name] = (min(w, t.wall), min(c, t.cpu))
    groups = con.execute("SELECT count(*) FROM calc_interaction_counts").fetchone()[0]
    kpis = con.execute("SELECT count(*), count(value) FROM calc_measured_kpis").fetchone()
    line(f"bare GROUP BY, count(*) only ({rows:,} rows)", *timings["bare_count"])
    line("bare GROUP BY, every column the measures read", *timings["bare_columns"])
    line("bare GROUP BY, the KPI counts, no checks/windows", *timings["bare_counts"])
    line("measured-KPI step", *timings["step"])
    print(
        f"      scan {min(step['scan']):.2f}s, rule tests {min(step['rules']):.3f}s, "
        f"05_measures {min(step['measures']):.3f}s; {groups:,} count groups, "
        f"{kpis[0]:,} KPI-months ({kpis[1]:,} with a value)"
    )
    ratio = timings["step"][0] / timings["bare_columns"][0]
    ratio_count = timings["step"][0] / timings["bare_count"][0]
    ratio_counts = timings["step"][0] / timings["bare_counts"][0]
    windows = con.execute("SELECT count(*) FROM calc_exclusion_segments").fetchone()[0]
    print(
        f"  ratio step / bare GROUP BY over the same columns: {ratio:.2f}x "
        f"({verdict(ratio, 1.3)}); over count(*) only: {ratio_count:.2f}x; over the same "
        f"counts without checks or windows: {ratio_counts:.2f}x ({windows} exclusion segments)"
    )
    print(f"  peak memory so far: {peak_mb():,.0f} MB")
    return {"ratio": ratio, "ratio_counts": ratio_counts, "timings": timings}


# --------------------------------------------------------------------------- (iii) pricing


def pricing(con: duckdb.DuckDBPyConnection, repeat: int, settle_step: float | None) -> dict:
    print("\n(iii) pricing: sql/04_pricing.sql vs a per-contract pandas loop")
    engine.run_script(con, engine.SQL_DIR / "03_indexation.sql")
    sql_wall, sql_cpu, _ = best(
        lambda: engine.run_script(con, engine.SQL_DIR / "04_pricing.sql"), repeat
    )
    sql_lines = {
        (c, p, k): a
        for c, p, k, a in con.execute(
            "SELECT contract_id, period, line_key, amount FROM calc_charge_lines"
        ).fetchall()
    }
    line_months = con.execute("SELECT count(*) FROM calc_line_months").fetchone()[0]
    line(f"04_pricing ({line_months:,} line-months, {len(sql_lines):,} lines)", sql_wall, sql_cpu)
    if settle_step is not None:
        line("04_pricing inside the backfill settle", settle_step)
    with Timer() as load:
        frames = pricing_pandas.load(con)
    with Timer() as loop:
        pandas_lines = pricing_pandas.price(frames)
    line("pandas: frames from DuckDB (not counted)", load.wall, load.cpu)
    line("pandas: per-contract loop", loop.wall, loop.cpu)
    differ = [k for k in sql_lines.keys() | pandas_lines.keys()
              if sql_lines.get(k) != pandas_lines.get(k)]  # fmt: skip
    print(
        f"  pandas lines {len(pandas_lines):,}; lines that differ from the SQL's: {len(differ)}"
        + (f" (first: {sorted(differ)[:3]})" if differ else "")
    )
    ratio = loop.wall / sql_wall
    print(f"  ratio pandas / SQL: {ratio:.0f}x ({verdict(ratio, 50, higher_is_better=True)})")
    print(f"  peak memory so far: {peak_mb():,.0f} MB")
    return {"ratio": ratio, "differ": len(differ)}


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="default bench/data (bench/data-N for N != 1000)")
    parser.add_argument("--contracts", type=int, default=1000, help="contracts to generate")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument(
        "--interactions", type=int, default=10_000_000, help="rows to generate (with --regenerate)"
    )
    parser.add_argument(
        "--parts", default="i,month,hist,cli,loop,ii,iii", help="which comparisons to run"
    )
    parser.add_argument(
        "--hist-months", type=int, default=12, help="months of interactions on disk (hist)"
    )
    parser.add_argument(
        "--hist-rows", type=int, default=10_000_000, help="interactions per closed month (hist)"
    )
    parser.add_argument(
        "--close",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="close the history before the month-end run (closing is per contract-month)",
    )
    args = parser.parse_args(argv)
    if args.data is None:
        args.data = HERE / ("data" if args.contracts == 1000 else f"data-{args.contracts}")
    parts = set(args.parts.split(","))
    contracts, data = args.data / "contracts", args.data / "inputs"
    if args.regenerate or not (contracts.is_dir() and data.is_dir()):
        print(f"generating {args.data} (once; delete it or pass --regenerate to redo)")
        generate.generate(
            args.data, args.contracts, args.interactions, log=lambda m: print(f"  {m}")
        )
    threads = duckdb.connect().execute("SELECT current_setting('threads')").fetchone()[0]
    print(f"machine: {machine()}; duckdb threads {threads}")
    print(f"portfolio: {args.data} ({sum(1 for _ in contracts.glob('*.yaml')):,} contracts)")
    results: dict[str, dict] = {}
    db = args.data / "bench.duckdb"
    with Timer() as total:
        if "i" in parts or "month" in parts or "loop" in parts:
            results["i"] = backfill(contracts, data, db, args.repeat)
        if "month" in parts:
            i = results["i"]
            month_db = args.data / "bench-month.duckdb"
            results["month"] = month_end(
                contracts, data, month_db, i["validate"], i["validate_cpu"], args.close
            )
        if "hist" in parts:
            if "month" not in results:
                raise SystemExit("--parts hist needs the month part too (its one-month figure)")
            results["hist"] = history_on_disk(
                contracts, data, args.data / "hist", args.hist_months, args.hist_rows,
                results["month"], args.close,
            )  # fmt: skip
        if "cli" in parts:
            results["cli"] = cli(contracts, data, args.data / "bench-cli.duckdb", args.close)
        if "loop" in parts:
            cli_wall = results.get("cli", {}).get("backfill_wall")
            results["loop"] = loop(contracts, data, db, results["i"]["wall"], cli_wall)
        if "ii" in parts or "iii" in parts:
            con, files = prepared(contracts, data)
            if "ii" in parts:
                results["ii"] = measures(con, files, args.repeat)
            if "iii" in parts:
                step = results.get("i", {}).get("steps", {}).get("04_pricing")
                results["iii"] = pricing(con, args.repeat, step)
    peak = peak_mb()
    print(f"\nsummary ({machine()})")
    rows = []
    if "i" in results:
        rows.append(("backfill / validate (one process)", results["i"]["ratio"], "<= 1.5x"))
        rows.append(("  the same in CPU time", results["i"]["cpu_ratio"], "<= 1.5x"))
    if "month" in results:
        rows.append(("month-end / validate (one process)", results["month"]["ratio"], "<= 1.5x"))
        rows.append(("  the same in CPU time", results["month"]["cpu_ratio"], "<= 1.5x"))
    if "hist" in results:
        rows.append((f"month-end, {args.hist_months} months on disk / the open month's",
                     results["hist"]["ratio"], "<= 1.1x"))  # fmt: skip
        rows.append(("  the same in CPU time", results["hist"]["cpu_ratio"], "<= 1.1x"))
    if "cli" in results:
        rows.append(("backfill / validate (CLI processes)", results["cli"]["backfill"], "<= 1.5x"))
        rows.append(("  the same in CPU time", results["cli"]["backfill_cpu"], "<= 1.5x"))
        rows.append(("month-end / validate (CLI processes)", results["cli"]["month_end"],
                     "<= 1.5x"))  # fmt: skip
        rows.append(("  the same in CPU time", results["cli"]["month_end_cpu"], "<= 1.5x"))
    if "loop" in results:
        rows.append(("plain loop / backfill (one process)", results["loop"]["ratio"], ">= 5x"))
        if "ratio_cli" in results["loop"]:
            rows.append(("plain loop / backfill (CLI process)", results["loop"]["ratio_cli"],
                         ">= 5x"))  # fmt: skip
    if "ii" in results:
        rows.append(("measured KPIs / bare GROUP BY", results["ii"]["ratio"], "<= 1.3x"))
    if "iii" in results:
        rows.append(("pandas pricing / SQL pricing", results["iii"]["ratio"], ">= 50x"))
    for label, ratio, target in rows:
        print(f"  {label:<40} {ratio:7.2f}x   target {target}")
    if "loop" in results:
        print(f"  plain loop lines differing from the engine's: {results['loop']['differ']}")
    if "cli" in results:
        c = results["cli"]
        print(
            f"  peak RSS of the backfill process {c['backfill_mb']:,.0f} MB, of any settle "
            f"process {c['peak_mb']:,.0f} MB (target < 2,048 MB)"
        )
    print(f"  peak memory of this process {peak:,.0f} MB; total {total.wall:.0f}s")


if __name__ == "__main__":
    main()
