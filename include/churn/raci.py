"""The RACI matrix of the pipeline's lifecycle phases, read from ``raci.yaml``.

The DAG takes each task's ``owner`` and ``doc_md`` from here, so responsibilities are
declared once and cannot drift between the matrix, the task owners and the docs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

ROLES = frozenset(
    {
        "data_engineer",
        "data_scientist",
        "ml_engineer",
        "mlops_engineer",
        "devops_engineer",
        "product_manager",
    }
)


@dataclass(frozen=True)
class PhaseRoles:
    """One row of the RACI matrix: who is Responsible, Accountable, Consulted, Informed."""

    task_id: str
    phase: str
    responsible: str
    accountable: str
    consulted: tuple[str, ...]
    informed: tuple[str, ...]
    hands_off: str

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


def parse_raci(document: dict) -> tuple[PhaseRoles, ...]:
    """Build the matrix from its YAML document, rejecting unknown roles and repeated phases."""
    rows = []
    for entry in document["phases"]:
        row = PhaseRoles(
            task_id=entry["task_id"],
            phase=entry["phase"],
            responsible=entry["responsible"],
            accountable=entry["accountable"],
            consulted=tuple(entry.get("consulted", ())),
            informed=tuple(entry.get("informed", ())),
            hands_off=" ".join(entry["hands_off"].split()),
        )
        named = {row.responsible, row.accountable, *row.consulted, *row.informed}
        unknown = named - ROLES
        if unknown:
            raise ValueError(f"RACI phase {row.task_id!r} names unknown roles: {sorted(unknown)}")
        rows.append(row)
    task_ids = [row.task_id for row in rows]
    if len(set(task_ids)) != len(task_ids):
        raise ValueError(f"RACI matrix repeats a phase: {task_ids}")
    return tuple(rows)


@cache
def load_raci() -> dict[str, PhaseRoles]:
    """The bundled matrix, keyed by task id, in lifecycle order."""
    text = resources.files("churn").joinpath("raci.yaml").read_text(encoding="utf-8")
    return {row.task_id: row for row in parse_raci(yaml.safe_load(text))}


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
