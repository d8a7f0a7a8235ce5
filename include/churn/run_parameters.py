"""The run's parameters, defined once: the typed values ``ingest`` starts a run from, and,
derived from them, the fields of the trigger form in the Airflow UI."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator

from churn.documents import Strict, validation_message
from churn.errors import PermanentError
from churn.settings import load_settings
from churn.sources import SOURCE_PATTERN

SOURCE_FORMS = (
    "A .csv or .parquet path (absolute, or relative to the project folder), file://..., or "
    "sql://<connection id>/<[schema.]table>. {score_date} in a path stands for the run's score date, "
    "e.g. /data/{score_date}/training.csv."
)


class RunParameterError(PermanentError, ValueError):
    """A run was triggered with a parameter that is unknown or malformed; the message names it."""


class RunParameters(Strict):
    """What a trigger (the form, the REST API, the schedule's defaults) asks of one run.

    Unknown names are refused, so a misspelt parameter cannot be silently ignored.
    """

    training_source: Annotated[
        str,
        Field(
            pattern=SOURCE_PATTERN,
            title="Training snapshot",
            description=f"Customers with a known churn outcome. {SOURCE_FORMS}",
        ),
    ]
    scoring_source: Annotated[
        str,
        Field(
            pattern=SOURCE_PATTERN,
            title="Scoring snapshot",
            description="The active customers to score, in the same forms as the training snapshot.",
        ),
    ]
    contract: Annotated[
        str,
        Field(
            min_length=1,
            title="Data contract",
            description="A bundled contract name (telco_churn) or the path of a contract YAML file.",
        ),
    ]
    score_date: Annotated[
        date | None,
        Field(
            title="Score date",
            description="The date the scores are for (YYYY-MM-DD). Empty: the run's logical date.",
        ),
    ] = None

    @field_validator("score_date", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        if isinstance(value, str) and value:
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise ValueError("not a date in YYYY-MM-DD form") from None
        return value or None


def read_run_parameters(params: Mapping[str, Any]) -> RunParameters:
    """The trigger's parameters as typed values; an unknown or malformed one is refused by name."""
    try:
        return RunParameters.model_validate(dict(params))
    except ValidationError as error:
        raise RunParameterError(validation_message(error, "run parameters")) from error


def trigger_form() -> dict[str, dict[str, Any]]:
    """Each parameter's default and JSON schema for Airflow's trigger form, from :class:`RunParameters`."""
    settings = load_settings()
    defaults = {
        "training_source": str(settings.default_training_source),
        "scoring_source": str(settings.default_scoring_source),
        "contract": settings.config.default_contract,
        "score_date": None,
    }
    form = {}
    for name, schema in RunParameters.model_json_schema()["properties"].items():
        optional = schema.pop("anyOf", None)
        if optional:  # the form's way to say "may be empty": a type list with null
            chosen = next(option for option in optional if option["type"] != "null")
            schema = {**schema, **chosen, "type": ["null", chosen["type"]]}
        form[name] = {**schema, "default": defaults[name]}
    return form
