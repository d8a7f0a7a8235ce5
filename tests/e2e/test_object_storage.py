"""The run folders in object storage: the real DAG through ``airflow dags test`` with
``CHURN_RUNS_BASE`` an ``s3://`` URL, its credentials and endpoint in an Airflow Connection.

The S3 server is moto's (``moto_server``), started on loopback by the test; the pipeline
reaches it as it would reach AWS, through Airflow's ObjectStoragePath, the Amazon provider
and s3fs. Nothing but the environment differs from a run on local disk, and scoring runs in
several mapped partitions.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import boto3
import httpx
import pytest

from churn.manifest import read_manifests
from tests.conftest import SCORE_DATE, free_port
from tests.e2e.deployment import BIN, Deployment, deploy, e2e_pipeline_config

pytestmark = pytest.mark.e2e

TRAINING_ROWS, SCORING_ROWS, PARTITION_ROWS = 3_000, 2_500, 1_000
# Airflow caches a filesystem per scheme and Connection id for the whole process, so no other
# test may name this Connection.
BUCKET, CONNECTION = "churn-runs", "object_storage_test_runs"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3 server on loopback holding an empty bucket; stopped after the module."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, s3_endpoint) -> Deployment:
    root = tmp_path_factory.mktemp("object-storage")
    config = e2e_pipeline_config(root / "pipeline.yaml", partition_rows=PARTITION_ROWS)
    connection = {
        "conn_type": "aws",
        "login": CREDENTIALS["aws_access_key_id"],
        "password": CREDENTIALS["aws_secret_access_key"],
        "extra": {"endpoint_url": s3_endpoint, "region_name": CREDENTIALS["region_name"]},
    }
    return deploy(
        root,
        TRAINING_ROWS,
        SCORING_ROWS,
        CHURN_RUNS_BASE=f"s3://{CONNECTION}@{BUCKET}/churn/runs",
        CHURN_PIPELINE_CONFIG=str(config),
        **{f"AIRFLOW_CONN_{CONNECTION.upper()}": json.dumps(connection)},
        # Never fall back to a cloud metadata service if the Connection were not found.
        AWS_EC2_METADATA_DISABLED="true",
    )


def test_a_run_keeps_its_folder_in_object_storage(deployment: Deployment, s3_endpoint, monkeypatch):
    result = deployment.trigger(score_date=SCORE_DATE.isoformat())
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    run = deployment.latest_run()
    assert run["state"] == "success"
    rows = deployment.json_output("tasks", "states-for-dag-run", "churn_pipeline", run["run_id"])
    partitions = [row for row in rows if row["task_id"] == "score.partition"]
    assert len(partitions) == 3 and {row["state"] for row in rows} == {"success"}

    keys = {
        item["Key"]
        for page in boto3.client("s3", endpoint_url=s3_endpoint, **CREDENTIALS)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=BUCKET)
        for item in page.get("Contents", [])
    }
    folder = f"churn/runs/score_date={SCORE_DATE}/"
    run_files = {key.split("/", 4)[-1] for key in keys if key.startswith(folder)}
    for expected in (
        "raw/training.csv",
        "raw/scoring.csv",
        "validated/training.parquet",
        "features/scoring.parquet",
        "model/test_split.parquet",
        "data_docs/index.html",
        "manifests/score.json",
    ):
        assert expected in run_files, (expected, sorted(run_files))
    assert not any(".partial" in key for key in keys)
    assert not (deployment.settings.state_dir / "runs").exists()

    for name, value in deployment.env.items():  # this process reads the folder as the tasks did
        if name.startswith(("AIRFLOW_CONN_", "AWS_", "CHURN_")):
            monkeypatch.setenv(name, value)
    run_dir = deployment.settings.run_dir(SCORE_DATE.isoformat(), run["run_id"])
    assert str(run_dir).startswith(f"s3://{CONNECTION}@{BUCKET}/churn/runs/")
    manifests = read_manifests(run_dir)
    assert manifests["score"].rows_written == SCORING_ROWS and manifests["score"].partitions == 3
    assert "failed" not in manifests
    scores = deployment.scores()
    assert len(scores) == SCORING_ROWS and scores["customer_id"].is_unique
