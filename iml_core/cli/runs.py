"""Learning runs one at a time: run, fork, resume."""

from __future__ import annotations

import json
import sys

from iml_core.cli.common import NUMBERS, add_settings, command, given, open_store, percent, \
    with_model_defaults
from iml_core.config import RUN_SETTINGS, RunConfig
from iml_core.errors import IMLError
from iml_core.runner import check_resumable, create_run, execute_run, fork_config, run_summary
from iml_core.status import Status
from iml_core.store import Store

# A run from the command line starts from empty notes; notes to start from come from a fork.
RUN_FLAGS = [name for name in RUN_SETTINGS if name != "initial_notes"]
# A fork goes on learning the old run's task with its agent and model: it may change how (the
# numbers and the feedback), not what it learns (the task, its label noise) or with which model.
FORK_FLAGS = ["feedback", *(name for name, setting in RUN_SETTINGS.items()
                            if setting.kind in NUMBERS and name != "label_noise")]


def add(commands) -> None:
    run = command(commands, "run", cmd_run, "one learning run", json="one JSON summary at the end instead of a table")
    add_settings(run, RUN_FLAGS)

    fork = command(commands, "fork", cmd_fork, "a new run from a run's notes at a step, with changed settings",
                   json="one JSON summary at the end")
    fork.add_argument("run_id", type=int)
    fork.add_argument("--step", type=int, required=True, help="start from the notes after this step")
    add_settings(fork, FORK_FLAGS, lambda name: "the old run's")

    resume = command(commands, "resume", cmd_resume, "go on with an interrupted, cancelled or failed run",
                     json="one JSON summary at the end")
    resume.add_argument("run_id", type=int)


def cmd_run(args) -> int:
    config = RunConfig(**with_model_defaults(given(args, RUN_FLAGS))).check()
    with open_store(args) as store:
        run_id = create_run(store, config)
        return execute(store, run_id, config.steps, args.json)


def cmd_fork(args) -> int:
    with open_store(args) as store:
        config = fork_config(store, args.run_id, args.step, **given(args, FORK_FLAGS)).check()
        run_id = create_run(store, config, parent=(args.run_id, args.step))
        return execute(store, run_id, config.steps, args.json)


def cmd_resume(args) -> int:
    with open_store(args) as store:
        check_resumable(store, args.run_id)
        return execute(store, args.run_id, store.run(args.run_id)["steps_total"], args.json)


def execute(store: Store, run_id: int, total_steps: int, as_json: bool) -> int:
    """Runs a created run here to its end with a progress bar on stderr; 1 when it did not complete."""
    from tqdm import tqdm  # only a command that runs draws a bar

    already = max(0, len(store.steps(run_id)) - 1)  # step 0 is the starting point, not a step
    with tqdm(total=total_steps, initial=already, desc=f"run {run_id}", unit="step", file=sys.stderr,
              disable=None, dynamic_ncols=True) as bar:

        def progress(record) -> None:
            if record.step == 0:
                return
            bar.set_postfix(train=f"{record.train_accuracy:.2f}",
                            eval="-" if record.eval_accuracy is None else f"{record.eval_accuracy:.2f}",
                            notes=f"{record.notes_words}w")
            bar.update(1)

        try:
            summary = execute_run(store, run_id, on_step=progress)
        except KeyboardInterrupt:
            print(f"run {run_id} stopped; its completed steps are in {store.path}; "
                  f"`python -m iml_core resume {run_id}` goes on", file=sys.stderr)
            return 130
        except IMLError as e:
            summary = run_summary(store, run_id)
            print(f"run {run_id} failed: {e}", file=sys.stderr)
    if as_json:
        print(json.dumps(summary))
    else:
        print(f"run {summary['run_id']} {summary['status']}: {summary['steps']} steps, "
              f"final eval accuracy {percent(summary['final_eval_accuracy']).strip()}%, "
              f"best {percent(summary['best_eval_accuracy']).strip()}% ({summary['db']})")
    return 0 if summary["status"] == Status.COMPLETED else 1
