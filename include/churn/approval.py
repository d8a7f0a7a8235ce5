"""Approval of a promotion: when it waits for a person, whom it asks, what it shows them, and
what their answer means.

Evaluation decides whether the challenger is good enough to promote; a promotion that changes
the model's measured quality by more than ``approvals.max_unapproved_auc_change``, or comes
from a run that drift triggered, waits for the Accountable role of the phase that asks: Model
Evaluation for a large change, Retraining for a drift-triggered run. Airflow's
human-in-the-loop task (:mod:`churn.airflow_approval`) puts the request to the role's users
(``approvals.users``); this module never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from churn.documents import ConfigurationError
from churn.handoffs import ApprovalOutcome, ApprovalRequest, EvaluateResult
from churn.raci import RaciMatrix, load_matrix
from churn.settings import ApprovalsConfig

# The options of the request, as Airflow's ApprovalOperator names them.
APPROVE, REJECT = "Approve", "Reject"
# The phases (raci.yaml) whose Accountable role approves: a large change in quality is Model
# Evaluation's call, a drift-triggered retraining Retraining's.
LARGE_CHANGE_PHASE, DRIFT_PHASE = "Model Evaluation", "Retraining"
# The challenger's card, an artifact of its MLflow run that evaluation writes: what it is and
# how it measured, readable before a promotion is approved (packaging writes the model card).
CHALLENGER_CARD = "challenger_card.md"
# Where a drift event's extra names the drifted features (with their PSI), as monitoring writes it.
FEATURES_KEY = "drifted_features"
METRIC_NAMES = {
    "test_roc_auc": "ROC AUC",
    "test_pr_auc": "PR AUC (average precision)",
    "test_brier": "Brier score (lower is better)",
    "test_log_loss": "log loss (lower is better)",
    "test_precision_at_threshold": "precision at the operating threshold",
    "test_recall_at_threshold": "recall at the operating threshold",
    "test_top_decile_lift": "top-decile lift",
}


@dataclass(frozen=True)
class ApprovalNeed:
    """One reason a promotion waits, and the phase whose Accountable role answers for it."""

    phase: str
    reason: str


def approval_needs(
    *,
    promote: bool,
    challenger_auc: float,
    champion_auc: float | None,
    max_unapproved_auc_change: float,
    drift_triggered: bool,
) -> list[ApprovalNeed]:
    """Why a promotion waits for approval; empty when it does not (or there is no promotion).

    A change of test ROC AUC beyond the allowed one, better or worse, is a model that behaves
    differently enough for a person to look first; with no champion to compare (or one that
    cannot score these rows) there is no change to measure. A run that drift triggered always asks.
    """
    if not promote:
        return []
    needs = []
    if champion_auc is not None and abs(challenger_auc - champion_auc) > max_unapproved_auc_change:
        needs.append(
            ApprovalNeed(
                LARGE_CHANGE_PHASE,
                f"test ROC AUC changes by {challenger_auc - champion_auc:+.4f} from the champion's, more than "
                f"the {max_unapproved_auc_change:.4f} allowed without approval",
            )
        )
    if drift_triggered:
        needs.append(ApprovalNeed(DRIFT_PHASE, "monitoring found drift and triggered this retraining run"))
    return needs


def accountable_role(phase: str, matrix: RaciMatrix) -> str:
    """The Accountable role of ``phase`` (a phase name of raci.yaml)."""
    return next(row.accountable for row in matrix.phases if row.phase == phase)


def respondents(roles: Sequence[str], approvals: ApprovalsConfig) -> list[str]:
    """The Airflow users who may answer for ``roles``, in order, each once; refused when a role
    has none, since a request assigned to nobody would be open to every user."""
    missing = [role for role in roles if not approvals.users.get(role)]
    if missing:
        raise ConfigurationError(
            f"pipeline.yaml: approvals.users names no Airflow user for {', '.join(missing)}, Accountable for "
            "approving promotions; add the users who answer for the role"
        )
    return list(dict.fromkeys(user for role in roles for user in approvals.users[role]))


def approving_roles(matrix: RaciMatrix | None = None) -> list[str]:
    """Every role that may be asked to approve a promotion."""
    matrix = matrix or load_matrix()
    return list(dict.fromkeys(accountable_role(phase, matrix) for phase in (LARGE_CHANGE_PHASE, DRIFT_PHASE)))


def approval_task_doc(approvals: ApprovalsConfig, matrix: RaciMatrix | None = None) -> str:
    """Markdown for the approve task's page in the Airflow UI: when it asks, whom, for how long."""
    matrix = matrix or load_matrix()
    asks = "\n".join(
        f"| {phase} | {when} | {accountable_role(phase, matrix)} "
        f"| {', '.join(approvals.users.get(accountable_role(phase, matrix), ()))} |"
        for phase, when in (
            (
                LARGE_CHANGE_PHASE,
                f"test ROC AUC differs from the champion's by more than {approvals.max_unapproved_auc_change:g}",
            ),
            (DRIFT_PHASE, "the run was triggered by monitoring's drift event"),
        )
    )
    return f"""### Approval of a promotion (`approve`)

When evaluation promotes a challenger and one of these holds, packaging waits here for the
phase's Accountable role to answer in **Required Actions** (or through the REST API);
otherwise this task passes at once. **Approve** lets packaging promote the challenger (the
champion alias moves once `score` has published the date with it);
**Reject**, or no answer within {approvals.response_timeout_hours:g} h, keeps the champion,
which then scores the date.

| phase that asks | when | Accountable | Airflow users who may answer |
|---|---|---|---|
{asks}

It is a step of Model Evaluation, owned by its Responsible role:

{matrix.tasks()["evaluate"].task_doc()}"""


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def champion_name(evaluated: EvaluateResult) -> str:
    return f"champion version {evaluated.champion_version}" if evaluated.champion_version else "no champion"


def metrics_section(evaluated: EvaluateResult) -> str:
    """The challenger's and the champion's metrics side by side, measured on the same rows
    (the test rows the champion never trained on), with their difference; without a
    comparison, the challenger's test metrics and why there is none."""
    challenger, champion = evaluated.challenger_comparison_metrics, evaluated.champion_comparison_metrics
    if challenger is None or champion is None:
        if evaluated.champion_version is None:
            why = "This is the first model: there is no champion to compare it with."
        else:
            why = (
                f"{champion_name(evaluated).capitalize()} was not measured on the challenger's test rows "
                "(the decision's reason says why)."
            )
        rows = "\n".join(
            f"| {METRIC_NAMES.get(name, name)} | {_number(value)} |" for name, value in evaluated.metrics.items()
        )
        return f"""{why} The challenger's metrics on its held-out test rows:

| metric | challenger |
|---|---|
{rows}"""
    rows = "\n".join(
        f"| {METRIC_NAMES.get(name, name)} | {_number(value)} | {_number(champion.get(name))} "
        f"| {'—' if name not in champion else f'{value - champion[name]:+.4f}'} |"
        for name, value in challenger.items()
    )
    compared = f"{evaluated.comparison_rows} test rows ({evaluated.comparison_positives} churned)"
    return f"""Both models scored the same {compared}: the challenger's test rows the champion
was never trained on. The difference is the challenger's figure minus the champion's.

| metric | challenger | {champion_name(evaluated)} | difference |
|---|---|---|---|
{rows}

On all its held-out test rows the challenger's ROC AUC is {_number(evaluated.metrics.get("test_roc_auc"))}
(the figure the quality floor judges)."""


def drift_section(drift_events: Sequence[Mapping[str, Any]]) -> str:
    """What the monitoring events that triggered the run say drifted: each feature with its
    PSI, then the event's other facts."""
    if not drift_events:
        return "The run was triggered by drift; its events carry no details."
    parts = []
    for event in drift_events:
        features = event.get(FEATURES_KEY) or {}
        if isinstance(features, Mapping) and features:
            rows = "\n".join(f"| {name} | {_number(psi)} |" for name, psi in features.items())
            parts.append(f"| drifted feature | PSI |\n|---|---|\n{rows}")
        elif features:
            parts.append(f"Drifted features: {', '.join(map(str, features))}")
        facts = [f"- {key.replace('_', ' ')}: {value}" for key, value in event.items() if key != FEATURES_KEY]
        parts.extend(["\n".join(facts)] if facts else [])
    return "\n\n".join(parts)


def request_body(
    evaluated: EvaluateResult,
    needs: Sequence[ApprovalNeed],
    *,
    approvals: ApprovalsConfig,
    drift_events: Sequence[Mapping[str, Any]] | None,
    challenger_run_url: str,
    champion_version_url: str | None,
) -> str:
    """The request in Markdown: why it asks, what each answer does, the two models' metrics
    on the same rows side by side, what drifted, and where to read more."""
    champion = champion_name(evaluated)
    reasons = "\n".join(f"- {need.reason} ({need.phase})" for need in needs)
    kept = (
        f"keeps {champion}, and the date is scored with it"
        if evaluated.champion_version
        else "promotes nothing: with no champion yet, the date is then not scored"
    )
    drift = f"\n\n### What drifted\n{drift_section(drift_events)}" if drift_events is not None else ""
    champion_link = (
        f"\n- [{champion} and its model card]({champion_version_url})" if champion_version_url is not None else ""
    )
    return f"""**Evaluation of {evaluated.run.score_date} decided to promote the challenger:** {evaluated.reason}.

It waits for approval because:
{reasons}

**Approve** moves the champion alias to the challenger once it has scored the date. **Reject**, or no
answer within {approvals.response_timeout_hours:g} h, {kept}.

### Metrics
{metrics_section(evaluated)}

A change of test ROC AUC up to {approvals.max_unapproved_auc_change:.4f} needs no approval.{drift}

### Links
- [the challenger's MLflow run]({challenger_run_url}): its metrics (the champion's on the same rows as
  `champion_test_*`), and under Artifacts its card (`{CHALLENGER_CARD}`: what it is, how it was chosen
  and measured) and the evaluation plots (`plots/`); the registered model card comes with packaging{champion_link}
- Airflow run `{evaluated.run.airflow_run_id}`
"""


def compared_challenger_auc(evaluated: EvaluateResult) -> float:
    """The challenger's ROC AUC on the rows it was compared with the champion on, else on all its test rows."""
    if evaluated.challenger_comparison_roc_auc is not None:
        return evaluated.challenger_comparison_roc_auc
    return evaluated.metrics["test_roc_auc"]


def approval_request(
    evaluated: EvaluateResult,
    *,
    approvals: ApprovalsConfig,
    drift_triggered: bool,
    drift_events: Sequence[Mapping[str, Any]] = (),
    challenger_run_url: str,
    champion_version_url: str | None,
    matrix: RaciMatrix | None = None,
) -> ApprovalRequest | None:
    """The request a promotion waits on, or None when it needs no approval (see :func:`approval_needs`)."""
    needs = approval_needs(
        promote=evaluated.promote,
        challenger_auc=compared_challenger_auc(evaluated),
        champion_auc=evaluated.champion_test_roc_auc,
        max_unapproved_auc_change=approvals.max_unapproved_auc_change,
        drift_triggered=drift_triggered,
    )
    if not needs:
        return None
    matrix = matrix or load_matrix()
    roles = list(dict.fromkeys(accountable_role(need.phase, matrix) for need in needs))
    champion_auc = evaluated.champion_test_roc_auc
    subject = (
        f"Promote the churn model of {evaluated.run.score_date}? Test ROC AUC "
        f"{compared_challenger_auc(evaluated):.3f}, champion's "
        + ("not measured" if champion_auc is None else f"{champion_auc:.3f}")
        + ("; a drift-triggered run" if drift_triggered else "")
    )
    return ApprovalRequest(
        reasons=[need.reason for need in needs],
        accountable_roles=roles,
        respondents=respondents(roles, approvals),
        subject=subject,
        body=request_body(
            evaluated,
            needs,
            approvals=approvals,
            drift_events=drift_events if drift_triggered else None,
            challenger_run_url=challenger_run_url,
            champion_version_url=champion_version_url,
        ),
    )


def approval_outcome(
    request: ApprovalRequest,
    *,
    chosen_options: Sequence[str],
    responded_by: str | None,
    responded_at: datetime | None,
) -> ApprovalOutcome:
    """What an answer to ``request`` means: approved only when a person chose Approve; the
    default Airflow applies at the time-out (Reject, answered by nobody) is a time-out."""
    if responded_by is None:
        decision = "timed_out"
    else:
        decision = "approved" if list(chosen_options) == [APPROVE] else "rejected"
    return ApprovalOutcome(
        decision=decision, reasons=request.reasons, responded_by=responded_by, responded_at=responded_at
    )


def promotes(evaluated: EvaluateResult, approval: ApprovalOutcome | None) -> bool:
    """Whether the run promotes its challenger: evaluation said promote and, when it asked
    for approval, a person approved."""
    if not evaluated.promote:
        return False
    return evaluated.approval is None or (approval is not None and approval.decision == "approved")
