"""The RACI matrix of the pipeline's lifecycle phases, read from ``raci.yaml``.

The DAG takes each task's ``owner`` and ``doc_md`` from here, so responsibilities are
declared once and cannot drift between the matrix, the task owners and the docs.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from pydantic import field_validator, model_validator

from churn.documents import Strict, parse_document


class PhaseRoles(Strict):
    """One row of the RACI matrix: who is Responsible, Accountable, Consulted, Informed."""

    task_id: str
    phase: str
    responsible: str
    accountable: str
    consulted: tuple[str, ...] = ()
    informed: tuple[str, ...] = ()
    hands_off: str

    @field_validator("hands_off")
    @classmethod
    def _one_line(cls, text: str) -> str:
        return " ".join(text.split())

    @property
    def named_roles(self) -> set[str]:
        return {self.responsible, self.accountable, *self.consulted, *self.informed}

    def task_doc(self) -> str:
        """Markdown for the task's page in the Airflow UI."""
        return (
            f"### {self.phase} (`{self.task_id}`)\n\n"
            f"| Responsible | Accountable | Consulted | Informed |\n"
            f"|---|---|---|---|\n"
            f"| {self.responsible} | {self.accountable} | {', '.join(self.consulted)} "
            f"| {', '.join(self.informed)} |\n\n"
            f"**Hands off:** {self.hands_off}\n"
        )


class RaciMatrix(Strict):
    """The roles of the team and, in lifecycle order, who does what in each phase."""

    roles: tuple[str, ...]
    phases: tuple[PhaseRoles, ...]

    @model_validator(mode="after")
    def _known_roles_and_unique_phases(self) -> RaciMatrix:
        for row in self.phases:
            unknown = row.named_roles - set(self.roles)
            if unknown:
                raise ValueError(f"phase {row.task_id!r} names roles not listed under 'roles': {sorted(unknown)}")
        task_ids = [row.task_id for row in self.phases]
        if len(set(task_ids)) != len(task_ids):
            raise ValueError(f"the matrix repeats a phase: {task_ids}")
        return self


def parse_raci(text: str, source: str) -> dict[str, PhaseRoles]:
    """The matrix in ``text``, keyed by task id in lifecycle order; errors name ``source`` and the key."""
    return {row.task_id: row for row in parse_document(RaciMatrix, text, source).phases}


@cache
def load_raci() -> dict[str, PhaseRoles]:
    """The bundled matrix, keyed by task id, in lifecycle order."""
    bundled = resources.files("churn").joinpath("raci.yaml")
    return parse_raci(bundled.read_text(encoding="utf-8"), str(bundled))


def render_matrix(matrix: dict[str, PhaseRoles]) -> str:
    """The whole matrix as a Markdown table for the DAG's documentation page."""
    lines = [
        "| task | phase | Responsible (owner) | Accountable | Consulted | Informed |",
        "|---|---|---|---|---|---|",
    ]
    for row in matrix.values():
        lines.append(
            f"| `{row.task_id}` | {row.phase} | {row.responsible} | {row.accountable} "
            f"| {', '.join(row.consulted)} | {', '.join(row.informed)} |"
        )
    return "\n".join(lines) + "\n"
