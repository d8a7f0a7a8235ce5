"""A person-readable summary of one pipeline run, checked against where the results live.

Figures come from the warehouse table and the MLflow registry themselves, not only from
the run's manifests, so the summary shows what a reader of those systems will find.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from churn.manifest import read_manifests
from churn.raci import load_raci
from churn.settings import Settings
from churn.tracking import champion_version, use_mlflow
from churn.warehouse import warehouse_state

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

# The lifecycle phases, in order, as the RACI matrix (and so the DAG) defines them.
PHASES = tuple(load_raci())


def summarize_run(run_dir: ObjectStoragePath, settings: Settings) -> tuple[str, bool]:
    """The summary text and whether every phase of the run completed or was skipped for a reason."""
    import mlflow

    manifests = read_manifests(run_dir)
    skipped = manifests["skipped"].phases if "skipped" in manifests else []
    finished = all(phase in manifests or phase in skipped for phase in PHASES)
    lines = [f"Run folder: {run_dir}"]
    if "ingest" in manifests:
        for name, landed in (("training", manifests["ingest"].training), ("scoring", manifests["ingest"].scoring)):
            lines.append(
                f"  ingested   {name} snapshot from {landed.source} ({landed.bytes:,} bytes, "
                f"sha256 {landed.sha256[:12]})"
            )
    if "validate" in manifests:
        checked = manifests["validate"]
        lines.append(
            f"  validated  training {checked.training.rows} rows ({checked.training.expectations} "
            f"expectations), scoring {checked.scoring.rows} rows "
            f"({checked.scoring.expectations}) against contract {checked.contract_name}"
        )
        lines.append(f"             report: {checked.report}")
    use_mlflow(settings)
    if "train" in manifests:
        trained = manifests["train"]
        tracked = mlflow.get_run(trained.mlflow_run_id).data
        selection = trained.selection
        lines.append(
            f"  trained    {trained.model_family} chosen by cross-validated ROC AUC "
            f"{tracked.metrics['cv_roc_auc']:.4f} among {len(selection.families)} families, searched in "
            f"{selection.seconds:.0f} s (MLflow run {trained.mlflow_run_id})"
        )
        if "test_roc_auc" in tracked.metrics:
            lines.append(
                f"  evaluated  test ROC AUC {tracked.metrics['test_roc_auc']:.4f}, PR AUC "
                f"{tracked.metrics['test_pr_auc']:.4f}, Brier {tracked.metrics['test_brier']:.4f}, "
                f"top-decile lift {tracked.metrics['test_top_decile_lift']:.2f}"
            )
            lines.append(
                f"             decision: {tracked.tags.get('promotion_decision')} "
                f"({tracked.tags.get('promotion_reason')})"
            )
    if skipped:
        lines.append(f"  skipped    {', '.join(skipped)}: {manifests['skipped'].reason}")
    if "package" in manifests:
        packaged = manifests["package"]
        champion = champion_version(settings)
        lines.append(
            f"  packaged   {packaged.model_name} version {packaged.model_version}"
            f"{' (reused: same training fingerprint)' if packaged.reused_existing_version else ''}; "
            f"promoted: {'yes (the alias moves once score publishes)' if packaged.promoted else 'no'}; "
            f"champion is now version {champion.version if champion else 'none'}"
        )
    if "score" in manifests:
        scored = manifests["score"]
        score_date = scored.run.score_date
        state = warehouse_state(settings, score_date)
        lines.append(
            f"  scored     {scored.rows_written:,} rows written in {scored.partitions} partition(s) to "
            f"{scored.warehouse}; {state.describe(scored.table, score_date)}"
        )
        lines.append(f"             version {scored.model_version} scored because {scored.model_chosen_because}")
    missing = [phase for phase in PHASES if phase not in manifests and phase not in skipped]
    if missing:
        lines.append(f"  NOT DONE   {', '.join(missing)}")
    if "failed" in manifests:
        failure = manifests["failed"]
        lines.append(f"\nFAILED at {failure.phase} ({failure.error_type}):\n{failure.error}")
    return "\n".join(lines), finished


def main() -> int:
    """``make scores``: what the warehouse holds for one score date, read with the project's Python."""
    import argparse

    from churn.airflow_connections import task_settings

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--score-date", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
    score_date = parser.parse_args().score_date
    settings = task_settings(warehouse=True)
    print(warehouse_state(settings, score_date).describe(settings.config.warehouse.table, score_date))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
