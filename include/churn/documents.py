"""The project's YAML files (``pipeline.yaml``, ``raci.yaml``, data contracts) read into
typed, validated objects, so a typo fails where the file is read, naming the file and key."""

from __future__ import annotations

from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from churn.errors import PermanentError

DocumentT = TypeVar("DocumentT", bound=BaseModel)


class Strict(BaseModel):
    """A document part that refuses keys it does not know, so a misspelt key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigurationError(PermanentError, ValueError):
    """A configuration file is missing, not YAML, or breaks its schema; the message names
    the file and every offending key."""


def describe_problem(problem: dict[str, Any]) -> str:
    """One validation problem in words: where in the document, and what is wrong there."""
    where = ".".join(str(part) for part in problem["loc"])
    if problem["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    if problem["type"] == "missing":
        return f"required key {where!r} is missing"
    message = problem["msg"].removeprefix("Value error, ")
    if not where:
        return message
    return f"{where}: {message} (got {problem['input']!r})"


def validation_message(error: ValidationError, source: str) -> str:
    problems = [describe_problem(problem) for problem in error.errors()]
    return f"{source}: " + "; ".join(problems)


def parse_document(
    model: type[DocumentT], text: str, source: str, *, error: type[ConfigurationError] = ConfigurationError
) -> DocumentT:
    """Read YAML ``text`` from ``source`` into ``model``, or raise ``error`` saying which keys are wrong."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as problem:
        raise error(f"{source} is not valid YAML: {problem}") from problem
    if not isinstance(document, dict):
        raise error(f"{source} must be a YAML mapping of keys to values")
    try:
        return model.model_validate(document)
    except ValidationError as problem:
        raise error(validation_message(problem, source)) from problem
