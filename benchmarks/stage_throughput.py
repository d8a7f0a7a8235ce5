"""Throughput of the generator, validation and feature building at 1,000,000 rows, what model
selection takes on the demo's 20,000 customers, and what calibration costs at scoring time,
measured side by side in one process.

* ``generator``: ``make_snapshots`` and writing the scoring snapshot as CSV, as ``churn-generate`` does;
* ``validation``: the contract's Great Expectations suite on that CSV, chunk by chunk, and its
  typed Parquet copy (``validate_snapshots``, the validate phase's work for one snapshot);
* ``feature``: the derived features, row group by row group (``build_feature_table``);
* ``model selection``: ``select_model`` on the training split of 20,000 customers with the
  bundled ``pipeline.yaml`` (its time budget included), then calibrating the winner;
* for each model family, at its configured hyperparameters and at the slowest-scoring
  configuration its search space allows (most trees or iterations, deepest trees),
  ``predict_proba`` of the calibrated model the pipeline trains against that of its base
  estimator, on the same rows, best of three alternated runs (issue 10's target: at most
  1.3 times).

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
# How each hyperparameter that drives scoring cost is made slowest: more trees or boosting
# iterations, deeper trees, smaller leaves. None (no limit) is the slowest where it is allowed.
SLOWEST = {
    "n_estimators": max,
    "max_iter": max,
    "max_depth": max,
    "max_leaf_nodes": max,
    "min_samples_leaf": min,
}


def timed(work) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def slowest_configuration(params, space):
    """``params`` with every parameter ``space`` searches that drives scoring cost at its
    slowest value; ``params`` itself when the space moves none of them."""
    from churn.settings import IntegerRange, RealRange

    slowest = {}
    for name, values in space or ():
        if name not in SLOWEST or values is None:
            continue
        if isinstance(values, IntegerRange | RealRange):
            values = [values.low, values.high]
        slowest[name] = None if None in values else SLOWEST[name](values)
    return type(params).model_validate({**params.model_dump(), **slowest})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows

    from churn.contract import load_contract
    from churn.feature import add_derived_features, build_feature_table
    from churn.generate import make_snapshots, write_snapshots
    from churn.locations import location
    from churn.model import family_pipeline, label_vector, model_inputs, sized_thread_pools
    from churn.settings import load_settings
    from churn.storage import read_parquet
    from churn.train import fit_calibrated, select_model, split_train_test
    from churn.validate import Snapshot, conform, text_view, validate_snapshots

    contract, config = load_contract("telco_churn"), load_settings().config
    training_config = config.training
    measured: list[tuple[str, float, int, str]] = []
    with tempfile.TemporaryDirectory(prefix="churn-stages-") as folder:
        workdir = Path(folder)

        def generate():
            snapshots = make_snapshots(TRAINING_CUSTOMERS, rows, seed=7)
            write_snapshots(snapshots, workdir / "sources")
            return snapshots

        seconds, snapshots = timed(generate)
        customers = TRAINING_CUSTOMERS + rows
        measured.append(("generator", seconds, customers, f"{customers:,} customers, CSV written"))

        scoring = Snapshot("scoring", location(workdir / "sources" / "scoring.csv"), "csv", False, "benchmark")
        seconds, validated = timed(lambda: validate_snapshots([scoring], contract, location(workdir / "run")))
        checks = validated["scoring"].expectations
        measured.append(("validation", seconds, rows, f"{rows:,} rows, {checks} expectations"))

        features = location(workdir / "run" / "features.parquet")
        seconds, _ = timed(lambda: build_feature_table(validated["scoring"].path, features, contract))
        measured.append(("feature", seconds, rows, f"{rows:,} rows"))

        training = add_derived_features(conform(text_view(snapshots.training), contract), contract)
        train, _ = split_train_test(training, contract, config.split.test_fraction, config.split.seed)
        inputs, labels = model_inputs(train, contract), label_vector(train, contract)
        with sized_thread_pools():
            seconds, selection = timed(lambda: select_model(inputs, labels, contract, training_config))
            winner = selection.winner
            calibration_seconds, _ = timed(
                lambda: fit_calibrated(
                    family_pipeline(winner, contract, selection.params[winner], training_config.seed),
                    inputs,
                    labels,
                    training_config.calibration,
                    training_config.cv_folds,
                    training_config.seed,
                )
            )
        record = selection.record
        searches = "; ".join(
            f"{family.family} {family.search} ({family.configurations_tried}, {family.seconds:.1f} s)"
            for family in record.families
        )
        budget = f"budget {record.time_budget_seconds:g} s" if record.time_budget_seconds else "no search"
        measured.append(
            ("model selection", seconds, len(train), f"{len(train):,} training-split rows, {budget}: {searches}")
        )
        measured.append(("calibrating the winner", calibration_seconds, len(train), f"{winner}, on the same rows"))

        scoring_inputs = model_inputs(read_parquet(features), contract)
        spaces = training_config.search.spaces.configured() if training_config.search else {}
        ratios = []
        for family, params in training_config.candidates.configured().items():
            configurations = {"configured": params}
            slowest = slowest_configuration(params, spaces.get(family))
            if slowest != params:
                configurations["slowest in its search space"] = slowest
            for name, chosen in configurations.items():
                with sized_thread_pools():
                    calibrated = fit_calibrated(
                        family_pipeline(family, contract, chosen, 1),
                        model_inputs(training, contract),
                        label_vector(training, contract),
                        training_config.calibration,
                        training_config.cv_folds,
                        1,
                    )
                    base = calibrated.calibrated_classifiers_[0].estimator
                    # Alternated and best of three, so neither pays alone for a first call's warm-up.
                    base_runs, calibrated_runs = [], []
                    for _ in range(3):
                        base_runs.append(timed(lambda model=base: model.predict_proba(scoring_inputs))[0])
                        calibrated_runs.append(
                            timed(lambda model=calibrated: model.predict_proba(scoring_inputs))[0]
                        )
                    base_seconds, calibrated_seconds = min(base_runs), min(calibrated_runs)
                changed = {key: value for key, value in chosen.model_dump().items() if key in SLOWEST}
                what = f"{rows:,} rows; {', '.join(f'{key}={value}' for key, value in changed.items()) or '-'}"
                measured.append((f"{family} ({name}): base estimator's predict_proba", base_seconds, rows, what))
                measured.append((f"{family} ({name}): calibrated predict_proba", calibrated_seconds, rows, what))
                ratios.append(f"{family} ({name}) {calibrated_seconds / base_seconds:.2f}")

    lines = [
        f"{rows:,} rows on {machine()}:",
        "",
        "| stage | seconds | rows per second | what |",
        "|---|---|---|---|",
        *(
            f"| {name} | {seconds:.1f} | {count / seconds:,.0f} | {what} |"
            for name, seconds, count, what in measured
        ),
        "",
        f"Calibrated scoring costs {', '.join(ratios)} times its base estimator's (target: at most 1.3).",
    ]
    title = "Generator, validation and feature throughput; model selection; the cost of calibration"
    title += " (`make bench-stages`)"
    publish(title, "\n".join(lines))


if __name__ == "__main__":
    main()
