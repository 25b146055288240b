"""The command line, `python -m iml_core COMMAND` (or `iml COMMAND`):

- runs (runs.py, sweep.py, ladder.py): run, sweep, fork, resume, ladder
- reading them (reading.py): runs, show, notes, check
- a study as one HTML file (report.py): report
- runs logged to MLflow (export.py): export
- scoring notes (evaluate.py): evaluate, baseline, ablate
- this machine (machine.py): doctor, models, build, data, serve

Every setting's flag is made from its row in iml_core.config.SETTINGS (common.py).
Exit codes: one table, exits.py (0 success, 1 a run that failed, 2 bad input, 3 a run stopped at
its budget, 130 cancelled).
"""

from __future__ import annotations

import argparse
import sys

from iml_core import llama_build
from iml_core.cli import evaluate, export, ladder, machine, reading, report, runs, sweep
from iml_core.cli.common import Parser
from iml_core.cli.exits import Exit
from iml_core.errors import RunFailed, UserError

GROUPS = (runs, sweep, ladder, reading, report, export, evaluate, machine)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="iml", description="IML Studio: In-Memory Learning runs from the command line.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in GROUPS:
        group.add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    llama_build.build_when_missing(machine.build_llama_cpp)  # a terminal waits for the build and watches it
    try:
        args, unknown = build_parser().parse_known_args(argv)
        if unknown:  # named here, where the command is known, so the hint points at its own help
            raise UserError(f"unrecognized arguments: {' '.join(unknown)} "
                            f"(see `python -m iml_core {args.command} --help`)")
        return args.handler(args)
    except UserError as e:
        print(f"iml: error: {e}", file=sys.stderr)
        return Exit.BAD_INPUT
    except RunFailed as e:
        print(f"iml: failed: {e}", file=sys.stderr)
        return Exit.FAILED
