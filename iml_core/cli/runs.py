"""Learning runs one at a time: run, fork, resume."""

from __future__ import annotations

import json
import sys

from iml_core.cli.common import NUMBERS, add_settings, command, given, open_store, say_estimate, \
    with_model_defaults
from iml_core.cli.exits import Exit, exit_for
from iml_core.formats import percent
from iml_core.config import BUDGET_SETTINGS, RUN_SETTINGS, RunConfig
from iml_core.errors import IMLError
from iml_core.runner import check_resumable, create_run, execute_run, fork_config, raise_limits, run_summary
from iml_core.status import Status
from iml_core.store import Store
from iml_core.tracking import URI_HELP, MlflowLogger, RunObserver


# A run from the command line starts from empty notes; notes to start from come from a fork.
RUN_FLAGS = [name for name in RUN_SETTINGS if name != "initial_notes"]
# A fork goes on learning the old run's task with its agent and model: it may change how (the
# numbers and the feedback), not what it learns (the task, its label noise) or with which model.
FORK_FLAGS = ["feedback", *(name for name, setting in RUN_SETTINGS.items()
                            if setting.kind in NUMBERS and name != "label_noise")]


def add(commands) -> None:
    run = command(commands, "run", cmd_run, "one learning run", json="one JSON summary at the end instead of a table")
    add_settings(run, RUN_FLAGS)
    add_mlflow_flag(run)

    fork = command(commands, "fork", cmd_fork, "a new run from a run's notes at a step, with changed settings",
                   json="one JSON summary at the end")
    fork.add_argument("run_id", type=int)
    fork.add_argument("--step", type=int, required=True, help="start from the notes after this step")
    add_settings(fork, FORK_FLAGS, lambda name: "the old run's")
    add_mlflow_flag(fork)

    resume = command(commands, "resume", cmd_resume, "go on with an interrupted, cancelled, failed or budget-reached "
                     "run", json="one JSON summary at the end")
    resume.add_argument("run_id", type=int)
    # A resume may raise a run's limits: they change nothing the run computes.
    add_settings(resume, BUDGET_SETTINGS, lambda name: "the run's own")
    add_mlflow_flag(resume)


def add_mlflow_flag(parser) -> None:
    parser.add_argument("--mlflow", metavar="URI", help=f"log to MLflow while it goes, step by step: {URI_HELP} "
                                                        "(optional: requirements-mlflow.txt)")


def mlflow_logger(args) -> MlflowLogger | None:
    """Made before the run is, so that a missing MLflow or a bad URI writes nothing."""
    return MlflowLogger(args.mlflow) if args.mlflow else None


def cmd_run(args) -> int:
    config = RunConfig(**with_model_defaults(given(args, RUN_FLAGS))).check()
    observer = mlflow_logger(args)
    with open_store(args) as store:
        say_estimate(store, [config])
        run_id = create_run(store, config)
        return execute(store, run_id, config.steps, args.json, observer)


def cmd_fork(args) -> int:
    observer = mlflow_logger(args)
    with open_store(args) as store:
        config = fork_config(store, args.run_id, args.step, **given(args, FORK_FLAGS)).check()
        run_id = create_run(store, config, parent=(args.run_id, args.step))
        return execute(store, run_id, config.steps, args.json, observer)


def cmd_resume(args) -> int:
    observer = mlflow_logger(args)
    with open_store(args) as store:
        check_resumable(store, args.run_id)
        limits = given(args, BUDGET_SETTINGS)
        if limits:
            raise_limits(store, args.run_id, limits)
        return execute(store, args.run_id, store.run(args.run_id)["steps_total"], args.json, observer)


def execute(store: Store, run_id: int, total_steps: int, as_json: bool, observer: RunObserver | None = None) -> int:
    """Runs a created run here to its end with a progress bar on stderr, telling `observer` of each
    step and of the end; 1 when it did not complete."""
    from tqdm import tqdm  # only a command that runs draws a bar

    already = max(0, len(store.steps(run_id)) - 1)  # step 0 is the starting point, not a step
    with tqdm(total=total_steps, initial=already, desc=f"run {run_id}", unit="step", file=sys.stderr,
              disable=None, dynamic_ncols=True) as bar:

        def progress(record) -> None:
            if observer is not None:
                observer.step(store, run_id, record)
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
            return Exit.CANCELLED
        except IMLError as e:
            summary = run_summary(store, run_id)
            print(f"run {run_id} failed: {e}", file=sys.stderr)
        finally:
            if observer is not None:
                observer.end(store, run_id)
    if summary["status"] == Status.BUDGET_REACHED:
        print(f"run {run_id}: {summary['error']} (`python -m iml_core resume {run_id}` with that flag)",
              file=sys.stderr)
    if as_json:
        print(json.dumps(summary))
    else:
        print(f"run {summary['run_id']} {summary['status']}: {summary['steps']} steps, "
              f"final eval accuracy {percent(summary['final_eval_accuracy'])}, "
              f"best {percent(summary['best_eval_accuracy'])} ({summary['db']})")
    return exit_for([summary["status"]])
