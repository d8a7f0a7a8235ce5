"""Errors a retry cannot fix end the Airflow task at once; outages are retried."""

import pytest
from airflow.sdk.exceptions import AirflowFailException

from churn.airflow_connections import ConnectionProblem
from churn.contract import ContractError
from churn.documents import ConfigurationError
from churn.run_parameters import RunParameterError
from churn.score import ScoringError
from churn.sources import SourceError
from churn.tracking import ModelUnavailableError
from churn.validate import ContractViolation
from churn.warehouse import WarehouseError


@pytest.mark.parametrize(
    "error",
    [
        SourceError,
        RunParameterError,
        ContractError,
        ConfigurationError,
        ContractViolation,
        ScoringError,
        ConnectionProblem,
    ],
)
def test_errors_a_retry_cannot_fix_fail_the_task_without_retries(error):
    assert issubclass(error, AirflowFailException)


@pytest.mark.parametrize("error", [WarehouseError, ModelUnavailableError])
def test_outages_are_left_to_airflows_retries(error):
    assert not issubclass(error, AirflowFailException)
