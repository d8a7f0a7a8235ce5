"""The run's parameters, defined once: the fields of the trigger form in the Airflow UI,
and the typed values that ``ingest`` starts a run from."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from pydantic import Field

from churn.documents import Strict
from churn.settings import load_settings
from churn.sources import SOURCE_PATTERN

SourceReference = Annotated[str, Field(pattern=SOURCE_PATTERN)]


class RunParameters(Strict):
    """What a trigger (the form, the REST API, a schedule's defaults) asks of one run."""

    training_source: SourceReference
    scoring_source: SourceReference
    contract: Annotated[str, Field(min_length=1)]
    score_date: date | None = None


def trigger_form() -> dict[str, dict[str, Any]]:
    """Each parameter's default and JSON schema, with the title and description the form shows."""
    settings = load_settings()
    return {
        "training_source": {
            "default": str(settings.default_training_source),
            "type": "string",
            "pattern": SOURCE_PATTERN,
            "title": "Training snapshot",
            "description": "Customers with a known churn outcome. A .csv or .parquet path (absolute, or relative "
            "to the project folder), file://..., or sql://<connection id>/<[schema.]table>. {score_date} in a "
            "path stands for the run's score date, e.g. /data/{score_date}/training.csv.",
        },
        "scoring_source": {
            "default": str(settings.default_scoring_source),
            "type": "string",
            "pattern": SOURCE_PATTERN,
            "title": "Scoring snapshot",
            "description": "The active customers to score, in the same forms as the training snapshot.",
        },
        "contract": {
            "default": settings.config.default_contract,
            "type": "string",
            "minLength": 1,
            "title": "Data contract",
            "description": "A bundled contract name (telco_churn) or the path of a contract YAML file.",
        },
        "score_date": {
            "default": None,
            "type": ["null", "string"],
            "format": "date",
            "title": "Score date",
            "description": "The date the scores are for (YYYY-MM-DD). Empty: the run's logical date.",
        },
    }
