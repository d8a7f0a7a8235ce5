"""Scoring throughput into PostgreSQL: the score phase against the naive way and the limit.

Measured side by side in one run, each method in a fresh process on the same model and
the same scoring feature table, end to end from the Parquet file to committed rows:

* ``score phase``: what ``score`` does (Parquet record batches, the next batch predicted
  while this one is COPYed into a staging table, the date swapped in one transaction);
* ``naive``: what most tutorials do: read everything, ``predict_proba``, pandas ``to_sql``;
* ``predict only`` and ``COPY only``: the model's ``predict_proba`` on the whole table, and a
  raw COPY of the already-computed rows; the larger of the two is the limit.

    .venv/bin/python benchmarks/score_throughput.py --customers 1000000 --postgres-url URL

``make bench-score`` starts a throwaway PostgreSQL and runs it with 1,000,000 customers.
The table is printed and appended to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from measuring import machine, peak_resident_mib, publish

BANDS = {"low": 0.3, "medium": 0.6, "high": 1.0}
SCORE_DATE = date(2026, 11, 29)
METHODS = ["score phase", "naive", "predict only", "COPY only"]
PROVENANCE = {"model_name": "churn-classifier", "model_version": "1", "run_id": "benchmark"}


def prepare(workdir: Path, customers: int) -> None:
    """The scoring feature table and a calibrated model trained as the pipeline trains it."""
    import joblib

    from churn.contract import load_contract
    from churn.feature import add_derived_features
    from churn.generate import make_snapshots
    from churn.model import candidate_pipelines, label_vector, model_inputs, sized_thread_pools
    from churn.settings import load_settings
    from churn.storage import write_parquet_atomically
    from churn.train import fit_calibrated
    from churn.validate import conform, text_view

    contract, config = load_contract("telco_churn"), load_settings().config
    snapshots = make_snapshots(20_000, customers, seed=11)
    training = add_derived_features(conform(text_view(snapshots.training), contract), contract)
    scoring = add_derived_features(conform(text_view(snapshots.scoring), contract), contract)
    write_parquet_atomically(scoring, workdir / "features.parquet")
    pipeline = candidate_pipelines(contract, config.training.candidates, 1)["logistic_regression"]
    with sized_thread_pools():
        model = fit_calibrated(
            pipeline, model_inputs(training, contract), label_vector(training, contract), "sigmoid", 5, 1
        )
    joblib.dump(model, workdir / "model.joblib")


def measure(method: str, workdir: Path, url: str) -> float:
    """Run ``method`` once; the seconds it took from the Parquet file to committed rows."""
    import joblib
    import pandas as pd
    import sqlalchemy as sa

    from churn.contract import load_contract
    from churn.model import sized_thread_pools
    from churn.score import score_frame, scored_batches
    from churn.warehouse import copy_rows, replace_scores, scores_table, warehouse_engine

    contract, model = load_contract("telco_churn"), joblib.load(workdir / "model.joblib")
    features = workdir / "features.parquet"
    engine = warehouse_engine(url)
    # The score phase writes to the pipeline's table; the others to a plain one, as a tutorial would.
    partitioned = method == "score phase"
    table = scores_table(sa.MetaData(), f"bench_{method.replace(' ', '_').lower()}", None, partitioned=partitioned)
    table.drop(engine, checkfirst=True)
    table.create(engine)
    scored_at = {**PROVENANCE, "scored_at": datetime.now(UTC)}
    rows = None
    if method == "COPY only":  # the rows computed beforehand, outside the clock
        with sized_thread_pools():
            rows = score_frame(model, pd.read_parquet(features), contract, BANDS).assign(**scored_at)
    start = time.perf_counter()
    if method == "score phase":
        batches = (
            batch.assign(**scored_at) for batch in scored_batches(model, features, contract, BANDS, 100_000)
        )
        replace_scores(engine, table, SCORE_DATE, batches)
    elif method == "naive":
        scored = score_frame(model, pd.read_parquet(features), contract, BANDS).assign(**scored_at)
        scored.assign(score_date=SCORE_DATE).to_sql(table.name, engine, if_exists="append", index=False)
    elif method == "predict only":
        with sized_thread_pools():
            score_frame(model, pd.read_parquet(features), contract, BANDS)
    elif method == "COPY only":
        with engine.begin() as connection:
            copy_rows(connection, table, rows.assign(score_date=SCORE_DATE))
    seconds = time.perf_counter() - start
    table.drop(engine, checkfirst=True)
    engine.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", default=os.environ.get("CHURN_TEST_POSTGRES_URL"))
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # one measurement, in its own process so its peak memory is its own
        seconds = measure(args.measure, Path(args.workdir), args.postgres_url)
        print(f"{seconds} {peak_resident_mib()}")
        return
    if not args.postgres_url:
        parser.error("give --postgres-url (or set CHURN_TEST_POSTGRES_URL); make bench-score starts one")
    with tempfile.TemporaryDirectory(prefix="churn-bench-") as workdir:
        prepare(Path(workdir), args.customers)
        results = {}
        for method in METHODS:
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--measure",
                    method,
                    "--workdir",
                    workdir,
                    "--postgres-url",
                    args.postgres_url,
                    "--customers",
                    str(args.customers),
                ],
                capture_output=True,
                text=True,
            )
            if done.returncode:
                sys.exit(f"measuring {method!r} failed:\n{done.stderr[-3000:]}")
            seconds, peak_mib = done.stdout.split()[-2:]
            results[method] = (float(seconds), float(peak_mib))
    limit = max(results["predict only"][0], results["COPY only"][0])
    lines = [
        f"Scoring {args.customers:,} customers into PostgreSQL on {machine()}:",
        "",
        "| method | seconds | customers per second | peak memory of its process |",
        "|---|---|---|---|",
    ]
    for method, (seconds, peak_mib) in results.items():
        lines.append(f"| {method} | {seconds:.1f} | {args.customers / seconds:,.0f} | {peak_mib:,.0f} MiB |")
    phase = results["score phase"][0]
    lines += [
        "",
        f"score phase throughput: {limit / phase:.2f} of the limit (the larger of predict only and COPY only; "
        f"target 0.7) and {results['naive'][0] / phase:.2f} times the naive approach (target 2).",
    ]
    publish("Scoring throughput (`make bench-score`)", "\n".join(lines))


if __name__ == "__main__":
    main()
