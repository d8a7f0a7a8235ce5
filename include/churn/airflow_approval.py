"""The approval gate's Airflow side: a human-in-the-loop task that asks the Accountable role's
users to approve a promotion in the Airflow UI, only when evaluation says it needs approval.

Airflow's ``HITLOperator`` (standard provider, Airflow 3.1+) writes the request, then parks
the task in the ``awaiting_input`` state until a user answers in the UI's Required Actions or
through the REST API; the scheduler answers with the default (Reject) once
``approvals.response_timeout_hours`` have passed. What the request says and what an answer
means is :mod:`churn.approval`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator

from churn.approval import APPROVE, REJECT, approval_outcome, approval_task_doc, approving_roles, respondents
from churn.handoffs import ApprovalOutcome, EvaluateResult
from churn.settings import load_settings


class PromotionApprovalOperator(HITLOperator):
    """Ask for approval of the promotion ``evaluated`` decided, if it needs it; return the
    :class:`~churn.handoffs.ApprovalOutcome` as JSON. A promotion that needs none (and a kept
    champion) passes at once, with no request."""

    template_fields = (*HITLOperator.template_fields, "evaluated")

    def __init__(self, *, evaluated: Any, **kwargs: Any) -> None:
        approvals = load_settings().config.approvals
        # Refuses, at parse, a configuration in which a role that may be asked has no user.
        respondents(approving_roles(), approvals)
        super().__init__(
            subject="Promote the challenger?",  # replaced by the request's own when one is made
            options=[APPROVE, REJECT],
            defaults=[REJECT],
            response_timeout=timedelta(hours=approvals.response_timeout_hours),
            doc_md=approval_task_doc(approvals),
            # The time before the request waits; the wait itself is bounded by response_timeout.
            execution_timeout=load_settings().config.task_timeout("approve"),
            **kwargs,
        )
        self.evaluated = evaluated

    def execute(self, context: Any) -> Any:
        request = EvaluateResult.model_validate(self.evaluated).approval
        if request is None:
            outcome = ApprovalOutcome(decision="not_needed")
            self.log.info(outcome.summary())
            return outcome.model_dump(mode="json")
        self.subject, self.body = request.subject, request.body
        self.assigned_users = [{"id": user, "name": user} for user in request.respondents]
        self.log.info(
            "Waiting for %s (%s) to approve: %s",
            ", ".join(request.accountable_roles),
            ", ".join(request.respondents),
            "; ".join(request.reasons),
        )
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        response = super().execute_complete(context, event)
        request = EvaluateResult.model_validate(self.evaluated).approval
        responder = response["responded_by_user"]
        outcome = approval_outcome(
            request,
            chosen_options=response["chosen_options"],
            responded_by=responder["name"] if responder else None,
            responded_at=response["responded_at"],
        )
        self.log.info(outcome.summary())
        return outcome.model_dump(mode="json")
