"""The run's parameters, defined once: the typed values ``ingest`` starts a run from, and,
derived from them, the fields of the trigger form in the Airflow UI."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationError, field_validator

from churn.documents import Strict, validation_message
from churn.errors import PermanentError
from churn.settings import ScoreDateWindow, load_settings
from churn.sources import SOURCE_FORMS, SourceError, parse_source


class RunParameterError(PermanentError, ValueError):
    """A run was triggered with a parameter that is unknown or malformed; the message names it."""


def accepted_source(spec: str) -> str:
    """``spec`` if it has one of the accepted forms, else say why not in words: the one judge
    is :func:`~churn.sources.parse_source`."""
    try:
        # Only the form is judged here: any date stands in for {score_date}, which ingest fills.
        parse_source(spec, date(2000, 1, 1))
    except SourceError as error:
        raise ValueError(str(error)) from None  # each of its messages says what is accepted
    return spec


# Not checked by the trigger form: Airflow refuses a JSON-schema pattern with the raw regular
# expression and schema in its message. A source in no accepted form fails ingest at once,
# saying in words which forms are accepted; the form's help says the same.
Source = Annotated[str, AfterValidator(accepted_source)]


class RunParameters(Strict):
    """What a trigger (the form, the REST API, the schedule's defaults) asks of one run.

    Unknown names are refused, so a misspelt parameter cannot be silently ignored.
    """

    training_source: Annotated[
        Source,
        Field(
            title="Training snapshot",
            description=(
                f"Customers with a known churn outcome: {SOURCE_FORMS}. {{score_date}} in a path "
                "stands for the run's score date, e.g. /data/{score_date}/training.csv."
            ),
        ),
    ]
    scoring_source: Annotated[
        Source,
        Field(
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
    allow_any_score_date: Annotated[
        bool,
        Field(
            title="Allow any score date",
            description=(
                "Score a date outside the window around the day the run is queued for (score_date_window "
                "in pipeline.yaml; by default 400 days back to 7 days ahead). Runs for dates before a scored "
                "date never promote, so a mistyped future date would freeze promotion."
            ),
        ),
    ] = False
    allow_shrink: Annotated[
        bool,
        Field(
            title="Allow a much smaller scoring snapshot",
            description=(
                "Let validate accept a scoring snapshot with far fewer rows than the date's scores in the "
                "warehouse, or else the previous scored date's (shrink_guard in pipeline.yaml; by default "
                "more than 20% fewer). The run's manifest records the override and the counts."
            ),
        ),
    ] = False

    @field_validator("score_date", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        if isinstance(value, str) and value:
            try:
                return date.fromisoformat(value)
            except ValueError:
                if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
                    raise ValueError("no such date (YYYY-MM-DD)") from None
                raise ValueError("not a date in YYYY-MM-DD form") from None
        return value or None


def read_run_parameters(params: Mapping[str, Any]) -> RunParameters:
    """The trigger's parameters as typed values; an unknown or malformed one is refused by name."""
    try:
        return RunParameters.model_validate(dict(params))
    except ValidationError as error:
        message = validation_message(error, "run parameters")
        unknown = [problem["loc"][0] for problem in error.errors() if problem["type"] == "extra_forbidden"]
        if unknown:
            message += f". The known parameters are {', '.join(RunParameters.model_fields)}"
            message += "".join(
                f"; did you mean {close[0]!r} for {name!r}?"
                for name in unknown
                if (close := difflib.get_close_matches(name, RunParameters.model_fields, n=1))
            )
        # The message says in words all that pydantic's error does; the task log needs no more.
        raise RunParameterError(message) from None


def check_score_date(score_date: date, today: date, window: ScoreDateWindow, *, allow_any: bool) -> str | None:
    """None when ``score_date`` lies in ``window`` around ``today`` (the day the run was queued
    for, never the worker's clock). Outside it, refused unless ``allow_any``; then what the
    override let through, for the log."""
    earliest, latest = today - timedelta(days=window.days_back), today + timedelta(days=window.days_ahead)
    if earliest <= score_date <= latest:
        return None
    outside = (
        f"score_date {score_date} is outside the window of score dates, {earliest} to {latest} "
        f"({window.days_back} days before to {window.days_ahead} days after {today}, the day this run was "
        "queued for; score_date_window in pipeline.yaml)"
    )
    if allow_any:
        return f"{outside}; allowed by the run parameter allow_any_score_date"
    raise RunParameterError(
        f"run parameters: {outside}. A mistyped date would be scored, and runs for every date before it could "
        "never promote. If the date is right, trigger the run again with the run parameter "
        "allow_any_score_date set to true"
    )


def trigger_form() -> dict[str, dict[str, Any]]:
    """Each parameter's default and JSON schema for Airflow's trigger form, from :class:`RunParameters`."""
    settings = load_settings()
    defaults = {
        "training_source": str(settings.default_training_source),
        "scoring_source": str(settings.default_scoring_source),
        "contract": settings.config.default_contract,
        "score_date": None,
        "allow_any_score_date": False,
        "allow_shrink": False,
    }
    form = {}
    for name, schema in RunParameters.model_json_schema()["properties"].items():
        optional = schema.pop("anyOf", None)
        if optional:  # the form's way to say "may be empty": a type list with null
            chosen = next(option for option in optional if option["type"] != "null")
            schema = {**schema, **chosen, "type": ["null", chosen["type"]]}
        if "format" in schema:
            # The form draws a string of format "date" as the browser's date picker, which shows
            # mm/dd/yyyy and reports a date that does not exist (2026-02-30) as empty, so the run
            # would silently be for its logical date. Under allOf, Airflow still checks the format
            # when the run is triggered, and the form draws a text field that keeps what was typed.
            schema["allOf"] = [{"format": schema.pop("format")}]
        form[name] = {**schema, "default": defaults[name]}
    return form
