"""The RACI matrix of the pipeline's lifecycle phases, and who owns which part of the
repository, read from ``raci.yaml``.

The DAG takes each task's ``owner`` and ``doc_md`` from here, and ``make raci`` writes
``CODEOWNERS`` from here, so responsibilities are declared once and cannot drift between the
matrix, the task owners, the docs and code review.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

from pydantic import field_validator, model_validator

from churn.documents import ConfigurationError, Strict, parse_document

# A GitHub team (@org/team) or user (@user), as CODEOWNERS names a reviewer.
HANDLE = re.compile(r"^@[A-Za-z0-9][A-Za-z0-9-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


class PhaseRoles(Strict):
    """One row of the RACI matrix: who is Responsible, Accountable, Consulted, Informed.

    A phase with a ``task_id`` is that DAG task, and its module ``include/churn/<task_id>.py``
    belongs to its Responsible role; a phase without one has no task yet."""

    task_id: str | None = None
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

    @property
    def module(self) -> str | None:
        """The phase's module, relative to the repository, or None for a phase with no task yet."""
        return f"include/churn/{self.task_id}.py" if self.task_id else None

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


class Role(Strict):
    """A role's reviewer handle in CODEOWNERS and the repository paths it owns beyond its
    phases' modules (shared infrastructure): files, or folders ending in ``/``."""

    handle: str
    owns: tuple[str, ...] = ()

    @field_validator("handle")
    @classmethod
    def _a_github_handle(cls, handle: str) -> str:
        if not HANDLE.match(handle):
            raise ValueError("a handle is a GitHub team (@org/team) or user (@user)")
        return handle

    @field_validator("owns")
    @classmethod
    def _plain_repository_paths(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        for path in paths:
            parts = path.rstrip("/").split("/")
            if (
                path.startswith("/")
                or any(part in ("", ".", "..") for part in parts)
                or re.search(r"[*?\[\]!]", path)
            ):
                raise ValueError(
                    f"{path!r} is not a plain path relative to the repository (no leading '/', '.', '..' "
                    "or wildcards; a folder ends in '/')"
                )
        return paths


class RaciMatrix(Strict):
    """The roles of the team and, in lifecycle order, who does what in each phase."""

    roles: dict[str, Role]
    # Owns every path that no role owns: CODEOWNERS' first line, `*`.
    default_owner: str
    phases: tuple[PhaseRoles, ...]

    @model_validator(mode="after")
    def _known_roles_and_unique_phases(self) -> RaciMatrix:
        if self.default_owner not in self.roles:
            raise ValueError(f"default_owner names a role not listed under 'roles': {self.default_owner!r}")
        for row in self.phases:
            unknown = row.named_roles - set(self.roles)
            if unknown:
                raise ValueError(
                    f"phase {row.task_id or row.phase!r} names roles not listed under 'roles': {sorted(unknown)}"
                )
        for key in ("task_id", "phase"):
            named = [getattr(row, key) for row in self.phases if getattr(row, key)]
            if len(set(named)) != len(named):
                raise ValueError(f"the matrix repeats a phase: {named}")
        claimed = {
            row.module: f"{row.responsible!r} (Responsible for {row.phase})" for row in self.phases if row.module
        }
        for role, entry in self.roles.items():
            for path in entry.owns:
                if path in claimed:
                    raise ValueError(f"{path!r} is owned twice: by {claimed[path]} and by {role!r}")
                claimed[path] = repr(role)
        return self

    def tasks(self) -> dict[str, PhaseRoles]:
        """The phases that are DAG tasks, keyed by task id, in lifecycle order."""
        return {row.task_id: row for row in self.phases if row.task_id}

    def owned_paths(self) -> dict[str, list[str]]:
        """Every role's repository paths: its phases' modules, then what it owns besides, sorted."""
        return {
            role: sorted(
                {row.module for row in self.phases if row.module and row.responsible == role} | set(entry.owns)
            )
            for role, entry in self.roles.items()
        }


def parse_matrix(text: str, source: str) -> RaciMatrix:
    """The matrix in ``text``; errors name ``source`` and the key."""
    return parse_document(RaciMatrix, text, source)


def parse_raci(text: str, source: str) -> dict[str, PhaseRoles]:
    """The phases in ``text`` that are DAG tasks, keyed by task id in lifecycle order."""
    return parse_matrix(text, source).tasks()


# DAG tasks that are a step of another row's phase, by that row's task id. A task group's steps
# are named for it already (``score.plan`` is a step of ``score``).
STEP_OF = {"approve": "evaluate"}


def phase_task_id(task_id: str) -> str:
    """The task id of the matrix row a DAG task belongs to: ``score.plan`` and ``score``'s other
    steps to ``score``, the approval gate ``approve`` to ``evaluate``."""
    return STEP_OF.get(task_id, task_id.split(".")[0])


@cache
def load_matrix() -> RaciMatrix:
    """The bundled matrix: roles, the default owner and every phase, with or without a task."""
    bundled = resources.files("churn").joinpath("raci.yaml")
    return parse_matrix(bundled.read_text(encoding="utf-8"), str(bundled))


def load_raci() -> dict[str, PhaseRoles]:
    """The bundled matrix's phases that are DAG tasks, keyed by task id, in lifecycle order."""
    return load_matrix().tasks()


# How the phases that are no task of churn_pipeline are carried out, for the matrix's task column.
CARRIED_OUTSIDE_THE_PIPELINE = {
    "Incident Response": "`check_scores_written` of churn_scores_due, and every task's failure alert",
    "Retraining": "a drift-started run of churn_pipeline",
}


def render_matrix(matrix: RaciMatrix | None = None) -> str:
    """The whole matrix (the bundled one by default) as a Markdown table for the DAG's page."""
    lines = [
        "| task | phase | Responsible (owner) | Accountable | Consulted | Informed |",
        "|---|---|---|---|---|---|",
    ]
    for row in (matrix or load_matrix()).phases:
        task = f"`{row.task_id}`" if row.task_id else CARRIED_OUTSIDE_THE_PIPELINE.get(row.phase, "no task yet")
        lines.append(
            f"| {task} | {row.phase} | {row.responsible} | {row.accountable} "
            f"| {', '.join(row.consulted)} | {', '.join(row.informed)} |"
        )
    return "\n".join(lines) + "\n"


CODEOWNERS_HEADER = """\
# Generated by `make raci` from include/churn/raci.yaml: do not edit by hand.
# Each phase's module belongs to the role Responsible for the phase; each role's other paths
# are its `owns` list there, and `default_owner` owns the rest. The last matching line wins.
"""


def render_codeowners(matrix: RaciMatrix, repository: Path) -> str:
    """The ``CODEOWNERS`` file for ``matrix``: the default owner, then every owned path, anchored
    at the repository root, most general first. A path missing from ``repository`` is refused."""
    owner_of = {path: role for role, paths in matrix.owned_paths().items() for path in paths}
    missing = [f"{path} ({owner_of[path]})" for path in sorted(owner_of) if not _exists(repository / path, path)]
    if missing:
        raise ConfigurationError(f"raci.yaml owns paths that are not in {repository}: {', '.join(missing)}")
    handle = {role: entry.handle for role, entry in matrix.roles.items()}
    lines = [("*", handle[matrix.default_owner])] + [
        (f"/{path}", handle[owner_of[path]]) for path in sorted(owner_of)
    ]
    width = max(len(pattern) for pattern, _ in lines)
    return CODEOWNERS_HEADER + "\n" + "".join(f"{pattern.ljust(width)}  {owner}\n" for pattern, owner in lines)


def _exists(target: Path, path: str) -> bool:
    return target.is_dir() if path.endswith("/") else target.is_file()
