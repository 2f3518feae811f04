"""Count interactions ahead on a Spark cluster with spark-submit (SPEC 12).

    spark-submit --master yarn --num-executors 20 --executor-cores 4 \\
        "$(python -c 'import pipelines.spark_submit as m; print(m.__file__)')" \\
        --contracts contracts_config --data /mnt/shared/data --counts /mnt/shared/counts \\
        --period 2026-12

Validates and counts the `period=YYYY-MM/` interaction files of the months on the cluster and
writes each month's interaction_counts with its manifest under --counts. `settle run
--counts-dir DIR` (or SETTLE_COUNTS_DIR) then reads them instead of scanning the files, as long as
the files are unchanged; the Dagster `interaction_counts` asset does the same from a Dagster run.
Absolute imports: spark-submit runs this file as a script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.closed_months import count_ahead
from pipelines.errors import SettleError
from pipelines.periods import parse_period


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Count interactions ahead on Spark.")
    parser.add_argument("--contracts", default="contracts_config")
    parser.add_argument("--data", default="data_samples")
    parser.add_argument("--counts", required=True, help="folder for the counts and manifests")
    parser.add_argument("--period", required=True, help="first month (YYYY-MM)")
    parser.add_argument("--to", default=None, help="last month (YYYY-MM)")
    args = parser.parse_args(argv)
    try:
        first = parse_period(args.period)
        last = parse_period(args.to) if args.to else first
        summary = count_ahead(
            Path(args.contracts), Path(args.data), Path(args.counts), first, last, "spark"
        )
    except (SettleError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"counted {summary['files']} file(s) of {', '.join(summary['months']) or 'no month'}: "
        f"{summary['rows']} row(s) in {args.counts}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
