"""`make raci`: print the RACI matrix, the DAG tasks and the repository paths each role owns,
all from include/churn/raci.yaml, and write CODEOWNERS from it (``--check``: fail if stale).

The tasks are read from the DAG files: ``churn_pipeline``'s ``phase_task`` calls and operators
given an owner from the matrix (``owner=RACI[phase].responsible``), and tasks whose owner is a
matrix row's Responsible role (``churn_scores_due``'s check, ``owner=INCIDENT_RESPONSE.responsible``
with ``INCIDENT_RESPONSE = incident_response()``). So this needs no Airflow; tests/dags checks the
result against the parsed DAGs.
"""

from __future__ import annotations

import argparse
import ast
import sys
import textwrap
from pathlib import Path

from churn.alerts import INCIDENT_RESPONSE_PHASE
from churn.raci import RaciMatrix, load_matrix, render_codeowners
from churn.roles_page import PIPELINE_DAG, SCORES_DUE_DAG

PROJECT_DIR = Path(__file__).resolve().parents[1]
# Each DAG whose tasks the matrix's roles own, by dag_id (its file's name).
DAG_FILES = {dag_id: PROJECT_DIR / "dags" / f"{dag_id}.py" for dag_id in (PIPELINE_DAG, SCORES_DUE_DAG)}
# Functions a DAG file calls for a matrix row by the row's phase (see churn.alerts).
ROW_FUNCTIONS = {"incident_response": INCIDENT_RESPONSE_PHASE}
CODEOWNERS = PROJECT_DIR / "CODEOWNERS"
WIDTH = 100
LETTERS = {"responsible": "R", "accountable": "A", "consulted": "C", "informed": "I"}


def dag_task_phases(dag_source: str, matrix: RaciMatrix) -> dict[str, str]:
    """Each task id a DAG file declares, in the file's order, mapped to the phase of the matrix
    row whose Responsible role owns it:

    * ``phase_task(task[, step])``: that task's row (``task.step`` in a task group named for it);
    * an operator made with ``task_id="..."`` and ``owner=RACI["task"].responsible`` (the
      approval gate, a step of Model Evaluation): that task's row;
    * a ``@task(owner=NAME.responsible)`` function, ``NAME`` assigned from a call in
      :data:`ROW_FUNCTIONS` (``INCIDENT_RESPONSE = incident_response()``): that row."""
    by_task_id = {task_id: row.phase for task_id, row in matrix.tasks().items()}
    tree = ast.parse(dag_source)
    row_names = {
        target.id: ROW_FUNCTIONS[node.value.func.id]
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", None) in ROW_FUNCTIONS
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "phase_task":
            phase, *step = (argument.value for argument in node.args if isinstance(argument, ast.Constant))
            found.append((node.lineno, ".".join([phase, *step]), by_task_id[phase]))
        elif isinstance(node, ast.Call):
            given = {keyword.arg: keyword.value for keyword in node.keywords}
            task_id, owner = given.get("task_id"), given.get("owner")
            if (
                isinstance(task_id, ast.Constant)
                and isinstance(owner, ast.Attribute)
                and owner.attr == "responsible"
                and isinstance(owner.value, ast.Subscript)
                and getattr(owner.value.value, "id", None) == "RACI"
                and isinstance(owner.value.slice, ast.Constant)
            ):
                found.append((node.lineno, task_id.value, by_task_id[owner.value.slice.value]))
        elif isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                phase = _row_owned_task(decorator, row_names)
                if phase:
                    given = {keyword.arg: keyword.value for keyword in decorator.keywords}
                    task_id = (
                        given["task_id"].value if isinstance(given.get("task_id"), ast.Constant) else node.name
                    )
                    found.append((node.lineno, task_id, phase))
    return {task: phase for _, task, phase in sorted(found)}


def _row_owned_task(decorator: ast.expr, row_names: dict[str, str]) -> str | None:
    """The phase of ``@task(owner=NAME.responsible, ...)`` when ``NAME`` is a matrix row, else None."""
    if not (isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "task"):
        return None
    owner = next((keyword.value for keyword in decorator.keywords if keyword.arg == "owner"), None)
    if isinstance(owner, ast.Attribute) and owner.attr == "responsible" and isinstance(owner.value, ast.Name):
        return row_names.get(owner.value.id)
    return None


def render_table(matrix: RaciMatrix) -> str:
    """Phases down, roles across, R/A/C/I in the cells; role names broken at '_' to fit 100 columns."""
    phase_width = max(len(row.phase) for row in matrix.phases)
    task_width = max(len("task"), *(len(row.task_id or "-") for row in matrix.phases))
    role_width = max(max(len(part) for part in role.split("_")) for role in matrix.roles) + 2
    heads = [[*role.split("_", 1), ""] for role in matrix.roles]
    lines = [
        " " * (phase_width + task_width + 4) + "".join(head[0].ljust(role_width) for head in heads),
        "phase".ljust(phase_width + 2)
        + "task".ljust(task_width + 2)
        + "".join(head[1].ljust(role_width) for head in heads),
    ]
    for row in matrix.phases:
        cells = [
            " ".join(letter for key, letter in LETTERS.items() if role in _as_tuple(getattr(row, key)))
            for role in matrix.roles
        ]
        lines.append(
            row.phase.ljust(phase_width + 2)
            + (row.task_id or "-").ljust(task_width + 2)
            + "".join(cell.ljust(role_width) for cell in cells)
        )
    lines.append("R Responsible (owns the task)  A Accountable  C Consulted  I Informed  - no churn_pipeline task")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _as_tuple(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else value


def render_ownership(title: str, owned: dict[str, list[str]]) -> str:
    """``title``, then each role and what it owns, wrapped to 100 columns."""
    indent = max(len(role) for role in owned) + 2
    lines = [title]
    for role, items in owned.items():
        lines += textwrap.wrap(
            ", ".join(items) or "nothing",
            WIDTH,
            initial_indent=role.ljust(indent),
            subsequent_indent=" " * indent,
            break_on_hyphens=False,
        )
    return "\n".join(lines) + "\n"


def render_report(matrix: RaciMatrix, dag_sources: dict[str, str]) -> str:
    """What ``make raci`` prints: the matrix, the tasks each role owns (of each DAG in
    ``dag_sources``, by dag_id; beside churn_pipeline's, named ``dag_id.task_id``), the paths
    each role owns."""
    responsible = {row.phase: row.responsible for row in matrix.phases}
    tasks = [
        (task if dag_id == PIPELINE_DAG else f"{dag_id}.{task}", phase)
        for dag_id, source in dag_sources.items()
        for task, phase in dag_task_phases(source, matrix).items()
    ]
    by_role = {role: [task for task, phase in tasks if responsible[phase] == role] for role in matrix.roles}
    return "\n".join(
        [
            "RACI matrix (include/churn/raci.yaml)\n\n" + render_table(matrix),
            render_ownership(
                "Tasks each role owns (the DAGs' task owners, their phase's Responsible role)", by_role
            ),
            render_ownership(
                f"Paths each role owns (every other path: {matrix.default_owner})", matrix.owned_paths()
            ),
            render_ownership(
                "Each role's reviewers in CODEOWNERS",
                {role: [entry.handle] for role, entry in matrix.roles.items()},
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if CODEOWNERS is stale")
    parser.add_argument("--codeowners", type=Path, default=CODEOWNERS, help="the file to write or check")
    arguments = parser.parse_args(argv)
    matrix = load_matrix()
    expected = render_codeowners(matrix, PROJECT_DIR)
    if arguments.check:
        current = arguments.codeowners.read_text() if arguments.codeowners.is_file() else None
        if current != expected:
            print(f"{arguments.codeowners} is not what raci.yaml generates: run `make raci`", file=sys.stderr)
            return 1
        print(f"{arguments.codeowners} agrees with raci.yaml")
        return 0
    print(render_report(matrix, {dag_id: path.read_text() for dag_id, path in DAG_FILES.items()}))
    arguments.codeowners.write_text(expected)
    print(f"wrote {arguments.codeowners}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
