"""Where a run's files live: Airflow ``ObjectStoragePath``s, on local disk or object storage.

The run folders' base comes from ``CHURN_RUNS_BASE``: a local folder (the default, under
``CHURN_HOME``) or a URL such as ``s3://<conn_id>@<bucket>/<prefix>``, whose credentials
Airflow takes from the Connection ``<conn_id>`` (the provider for the scheme must be
installed, e.g. apache-airflow-providers-amazon[s3fs] for ``s3://``). The phases open files
through these paths and never by name, so the same code reads and writes both. This module
imports Airflow because the path type, and the Connection behind it, are Airflow's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from airflow.sdk import ObjectStoragePath
from pydantic import PlainSerializer, PlainValidator, WithJsonSchema


def location(value: str | os.PathLike[str] | ObjectStoragePath) -> ObjectStoragePath:
    """A file or folder in run storage: a local path (made absolute), or a URL."""
    if isinstance(value, ObjectStoragePath):
        return value
    text = os.fspath(value)
    return ObjectStoragePath(text if "://" in text else f"file://{Path(text).expanduser().resolve()}")


# A location in a typed record: given as a path or URL, kept as an ObjectStoragePath, and
# written (to XCom, to manifests) as its URL.
Location = Annotated[
    ObjectStoragePath,
    PlainValidator(location),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "format": "uri"}),
]
