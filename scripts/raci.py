"""`make raci`: print the RACI matrix, the DAG tasks and the repository paths each role owns,
all from include/churn/raci.yaml, and write CODEOWNERS from it (``--check``: fail if stale).

The tasks are read from the DAG file's ``phase_task`` calls and the operators given an owner
from the matrix (``owner=RACI[phase].responsible``), so this needs no Airflow; tests/dags
checks the result against the parsed DAG.
"""

from __future__ import annotations

import argparse
import ast
import sys
import textwrap
from pathlib import Path

from churn.raci import RaciMatrix, load_matrix, render_codeowners

PROJECT_DIR = Path(__file__).resolve().parents[1]
DAG_FILE = PROJECT_DIR / "dags" / "churn_pipeline.py"
CODEOWNERS = PROJECT_DIR / "CODEOWNERS"
WIDTH = 100
LETTERS = {"responsible": "R", "accountable": "A", "consulted": "C", "informed": "I"}


def dag_task_phases(dag_source: str) -> dict[str, str]:
    """Each task id the DAG file declares with ``phase_task(phase[, step])``, in the file's order,
    mapped to its phase: ``phase`` itself, or ``phase.step`` in a task group named for the phase;
    and each operator made with ``task_id="..."`` and ``owner=RACI["phase"].responsible`` (the
    approval gate, a step of Model Evaluation), mapped to that phase."""
    found = []
    for node in ast.walk(ast.parse(dag_source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "phase_task":
            phase, *step = (argument.value for argument in node.args if isinstance(argument, ast.Constant))
            found.append((node.lineno, ".".join([phase, *step]), phase))
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
                found.append((node.lineno, task_id.value, owner.value.slice.value))
    return {task: phase for _, task, phase in sorted(found)}


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
    lines.append("R Responsible (owns the task)  A Accountable  C Consulted  I Informed  - no task yet")
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


def render_report(matrix: RaciMatrix, dag_source: str) -> str:
    """What ``make raci`` prints: the matrix, the tasks each role owns, the paths each role owns."""
    tasks = dag_task_phases(dag_source)
    by_role = {
        role: [task for task, phase in tasks.items() if matrix.tasks()[phase].responsible == role]
        for role in matrix.roles
    }
    return "\n".join(
        [
            "RACI matrix (include/churn/raci.yaml)\n\n" + render_table(matrix),
            render_ownership("Tasks each role owns (the DAG's task owners, its Responsible role)", by_role),
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
    print(render_report(matrix, DAG_FILE.read_text()))
    arguments.codeowners.write_text(expected)
    print(f"wrote {arguments.codeowners}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
