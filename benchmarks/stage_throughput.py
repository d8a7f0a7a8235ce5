"""Throughput of the generator, validation and feature building at 1,000,000 rows, and what
calibration costs at scoring time, measured side by side in one process.

* ``generator``: ``make_snapshots`` and writing the scoring snapshot as CSV, as ``churn-generate`` does;
* ``validation``: the contract's Great Expectations suite on that CSV, chunk by chunk, and its
  typed Parquet copy (``validate_snapshots``, the validate phase's work for one snapshot);
* ``feature``: the derived features, row group by row group (``build_feature_table``);
* for each model family, ``predict_proba`` of the calibrated model the pipeline trains against
  that of its base estimator, on the same rows, best of three alternated runs (issue 9's
  target: at most about 1.3 times).

    .venv/bin/python benchmarks/stage_throughput.py --rows 1000000

``make bench-stages`` runs it at 1,000,000 rows. The table is printed and appended to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from measuring import machine, publish

TRAINING_CUSTOMERS = 20_000


def timed(work) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows

    from churn.contract import load_contract
    from churn.feature import add_derived_features, build_feature_table
    from churn.generate import make_snapshots, write_snapshots
    from churn.locations import location
    from churn.model import candidate_pipelines, label_vector, model_inputs, sized_thread_pools
    from churn.settings import load_settings
    from churn.storage import read_parquet
    from churn.train import fit_calibrated
    from churn.validate import Snapshot, conform, text_view, validate_snapshots

    contract, config = load_contract("telco_churn"), load_settings().config
    measured: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="churn-stages-") as folder:
        workdir = Path(folder)

        def generate():
            snapshots = make_snapshots(TRAINING_CUSTOMERS, rows, seed=7)
            write_snapshots(snapshots, workdir / "sources")
            return snapshots

        seconds, snapshots = timed(generate)
        measured.append(("generator", seconds, f"{TRAINING_CUSTOMERS + rows:,} customers, CSV written"))

        scoring = Snapshot("scoring", location(workdir / "sources" / "scoring.csv"), "csv", False, "benchmark")
        seconds, validated = timed(lambda: validate_snapshots([scoring], contract, location(workdir / "run")))
        checks = validated["scoring"].expectations
        measured.append(("validation", seconds, f"{rows:,} rows, {checks} expectations"))

        features = location(workdir / "run" / "features.parquet")
        seconds, _ = timed(lambda: build_feature_table(validated["scoring"].path, features, contract))
        measured.append(("feature", seconds, f"{rows:,} rows"))

        training = add_derived_features(conform(text_view(snapshots.training), contract), contract)
        scoring_inputs = model_inputs(read_parquet(features), contract)
        ratios = []
        for family, pipeline in candidate_pipelines(contract, config.training.candidates, 1).items():
            with sized_thread_pools():
                calibrated = fit_calibrated(
                    pipeline, model_inputs(training, contract), label_vector(training, contract), "sigmoid", 5, 1
                )
                base = calibrated.calibrated_classifiers_[0].estimator
                # Alternated and best of three, so neither pays alone for a first call's warm-up.
                base_runs, calibrated_runs = [], []
                for _ in range(3):
                    base_runs.append(timed(lambda model=base: model.predict_proba(scoring_inputs))[0])
                    calibrated_runs.append(timed(lambda model=calibrated: model.predict_proba(scoring_inputs))[0])
                base_seconds, calibrated_seconds = min(base_runs), min(calibrated_runs)
            measured.append((f"{family}: base estimator's predict_proba", base_seconds, f"{rows:,} rows"))
            measured.append((f"{family}: calibrated predict_proba", calibrated_seconds, f"{rows:,} rows"))
            ratios.append(f"{family} {calibrated_seconds / base_seconds:.2f}")

    lines = [
        f"{rows:,} rows on {machine()}:",
        "",
        "| stage | seconds | rows per second | what |",
        "|---|---|---|---|",
        *(f"| {name} | {seconds:.1f} | {rows / seconds:,.0f} | {what} |" for name, seconds, what in measured),
        "",
        f"Calibrated scoring costs {', '.join(ratios)} times its base estimator's (target: about 1.3 at most).",
    ]
    title = "Generator, validation and feature throughput; the cost of calibration (`make bench-stages`)"
    publish(title, "\n".join(lines))


if __name__ == "__main__":
    main()
