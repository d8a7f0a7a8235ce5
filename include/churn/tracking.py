"""MLflow set-up shared by the phases that track runs and use the model registry."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from churn.errors import PermanentError, is_transient
from churn.settings import Settings, redact_text

logging.getLogger("alembic").setLevel(logging.WARNING)

# Tags on registered model versions: what a version was trained under, and the score date
# of the run that last made it champion (runs for earlier dates must not move the alias).
CONTRACT_TAG = "contract_sha256"
PROMOTED_FOR_TAG = "promoted_for_score_date"
# Replaces PROMOTED_FOR_TAG on a version once its date is forgotten (scripts/forget_date.py):
# the record stays, but no longer holds runs for earlier dates back.
FORGOTTEN_PROMOTION_TAG = "forgotten_promoted_for_score_date"
# The tag naming what a version's model was made of (rows, contract, configuration, code; see
# churn.train.training_fingerprint): with its MLflow run, what the version is, whatever its number.
FINGERPRINT_TAG = "training_fingerprint"
# The experiment tag that records an experiment's kind (MLflow's UI sets and reads it);
# "custom_model_development" is its "Machine learning" kind (runs, metrics, models), not the
# GenAI one (traces, prompts). MLflow 3.17's UI shows the view its link or its sidebar toggle
# names (GenAI at first), so the links the project prints name the machine learning view.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MACHINE_LEARNING_KIND = "custom_model_development"


class ChampionChangedError(RuntimeError):
    """Another run moved the champion between this run's evaluation and its promotion."""


@dataclass(frozen=True)
class ModelIdentity:
    """What a registered version is, whatever number a registry gives it: the MLflow run that
    logged its model and the fingerprint of what that model was made of."""

    run_id: str
    training_fingerprint: str | None


class ModelUnavailableError(RuntimeError):
    """A registered model could not be looked up or loaded; nothing was scored with it."""


class DamagedModelError(PermanentError, ModelUnavailableError):
    """A registered model's files are missing or cannot be loaded; only restoring them helps."""


def use_mlflow(settings: Settings) -> str:
    """Point MLflow at the configured tracking server and return the experiment id.

    On the embedded default the experiment's artifacts go under ``CHURN_HOME``; a
    tracking server decides its own artifact store. The experiment is tagged as a machine
    learning one (``EXPERIMENT_KIND_TAG``), not a generative-AI one.
    """
    import mlflow
    from mlflow.environment_variables import MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_USERNAME

    # MLflow's client takes basic-auth credentials only from the environment (or a credentials
    # file), so they are exported for this process; every task of a run uses the same login.
    if settings.mlflow_username:
        MLFLOW_TRACKING_USERNAME.set(settings.mlflow_username)
    if settings.mlflow_password:
        MLFLOW_TRACKING_PASSWORD.set(settings.mlflow_password)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    artifact_location = None
    if settings.mlflow_tracking_uri.startswith("sqlite:"):
        artifact_location = create_local_store(settings.mlflow_tracking_uri, settings.mlflow_artifact_root)
    name = settings.config.experiment_name
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        return mlflow.create_experiment(
            name, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: MACHINE_LEARNING_KIND}
        )
    if EXPERIMENT_KIND_TAG not in experiment.tags:  # made before the tag was set; a kind chosen in the UI stays
        client = mlflow.MlflowClient()
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MACHINE_LEARNING_KIND)
    return experiment.experiment_id


def create_local_store(tracking_uri: str, artifact_root: Path) -> str:
    """Create the SQLite tracking store at ``tracking_uri``, if absent, with its artifacts under
    ``artifact_root``; return that folder's URI.

    MLflow's client would create it with its built-in default artifact root, ``./mlruns``, so
    the store's ``Default`` experiment would keep its artifacts in whatever folder the first
    task happened to run in (the project folder under ``make demo``).
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    artifact_root.mkdir(parents=True, exist_ok=True)
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    if not database.exists():
        database.parent.mkdir(parents=True, exist_ok=True)
        SqlAlchemyStore(tracking_uri, artifact_root.as_uri()).engine.dispose()
    return artifact_root.as_uri()


def aliased_version(model_name: str, alias: str) -> Any | None:
    """The model version ``alias`` points at, or None if the model or the alias is absent."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        registered = client.get_registered_model(model_name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    if alias not in registered.aliases:
        return None
    return client.get_model_version(model_name, registered.aliases[alias])


def promoted_for(version: Any | None) -> date | None:
    """The score date of the run that last made ``version`` champion, if it says."""
    if version is None or PROMOTED_FOR_TAG not in version.tags:
        return None
    return date.fromisoformat(version.tags[PROMOTED_FOR_TAG])


def forget_promotions_for(model_name: str, score_date: date) -> list[str]:
    """Every version of ``model_name`` recorded as promoted for ``score_date``, now recorded as
    such under :data:`FORGOTTEN_PROMOTION_TAG` instead, so the date no longer holds runs for
    earlier dates back; returns those versions."""
    from mlflow import MlflowClient

    client = MlflowClient()
    forgotten = []
    for version in client.search_model_versions(f"name = '{model_name}'"):
        if version.tags.get(PROMOTED_FOR_TAG) == score_date.isoformat():
            client.set_model_version_tag(
                model_name, version.version, FORGOTTEN_PROMOTION_TAG, score_date.isoformat()
            )
            client.delete_model_version_tag(model_name, version.version, PROMOTED_FOR_TAG)
            forgotten.append(str(version.version))
    return forgotten


def champion_version(settings: Settings) -> Any | None:
    """The champion's model version, or None before the first promotion."""
    return aliased_version(settings.config.registered_model, settings.config.champion_alias)


def model_identity(model_name: str, version: str) -> ModelIdentity:
    """The identity of ``model_name``'s ``version`` as the registry records it now."""
    from mlflow import MlflowClient

    registered = MlflowClient().get_model_version(model_name, version)
    return ModelIdentity(registered.run_id, registered.tags.get(FINGERPRINT_TAG))


def check_champion_unchanged(model_name: str, alias: str, compared: str | None, promoting: str) -> None:
    """Raise :class:`ChampionChangedError` unless ``alias`` still names the version the
    challenger was compared with (``compared``; None: no version), or already names the
    challenger (``promoting``: a retry after the move)."""
    current = aliased_version(model_name, alias)
    current_version = str(current.version) if current is not None else None
    if current_version not in {compared, promoting}:
        raise ChampionChangedError(
            f"the {alias!r} alias of {model_name!r} moved from version {compared} to {current_version} after "
            "this run's evaluation; not promoting a challenger compared with an outdated champion. Rerun the "
            "date to compare with the new one."
        )


def move_champion(model_name: str, alias: str, version: str, *, score_date: date, compared: str | None) -> None:
    """Point ``alias`` at ``version``, promoted for ``score_date``, unless another run moved it
    since evaluation (see :func:`check_champion_unchanged`); moving it again changes nothing."""
    from mlflow import MlflowClient

    check_champion_unchanged(model_name, alias, compared, version)
    client = MlflowClient()
    client.set_model_version_tag(model_name, version, PROMOTED_FOR_TAG, score_date.isoformat())
    client.set_registered_model_alias(model_name, alias, version)


def load_registered_model(model_name: str, version: str) -> Any:
    """Load a scikit-learn model by name and version from the configured registry only."""
    import mlflow.sklearn

    try:
        return mlflow.sklearn.load_model(f"models:/{model_name}/{version}")
    except Exception as error:  # missing files, a corrupt pickle, a storage or network error
        if is_transient(error):
            unavailable, why = ModelUnavailableError, "the registry or its storage did not answer"
        else:
            unavailable, why = DamagedModelError, "artifacts missing or corrupt?"
        raise unavailable(
            f"{model_name!r} version {version} could not be loaded from the registry ({why}): "
            f"{redact_text(str(error))}"
        ) from error
