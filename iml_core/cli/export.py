"""Runs sent where people track experiments: export (to MLflow, iml_core.tracking)."""

from __future__ import annotations

import json
import sys
import time

from iml_core.cli.common import command, open_store
from iml_core.errors import UserError
from iml_core.tracking import URI_HELP, MlflowLogger


def add(commands) -> None:
    export = command(commands, "export", cmd_export, "log runs to MLflow: settings, per-step metrics and alarms, "
                                                     "the notes after every step, the last notes as a prompt",
                     json="one JSON object: the tracking URI, the experiment, and each run's MLflow run id")
    export.description += "; exporting a run again updates its MLflow run in place"
    export.add_argument("run_ids", type=int, nargs="*", metavar="RUN", help="the runs to export")
    export.add_argument("--study", action="append", default=[], metavar="NAME",
                        help="every run of this study or sweep, e.g. 'sweep 3' (repeatable)")
    export.add_argument("--mlflow", required=True, metavar="URI", help=URI_HELP)


def cmd_export(args) -> int:
    if not args.run_ids and not args.study:
        raise UserError("name the runs to export (RUN...) or a study (--study NAME)")
    logger = MlflowLogger(args.mlflow)  # a missing MLflow or a bad URI fails before anything is read
    started = time.perf_counter()
    with open_store(args) as store:
        run_ids = list(dict.fromkeys([*(store.run(run_id)["id"] for run_id in args.run_ids),
                                      *_study_runs(store, args.study)]))
        exported = []
        for run_id in run_ids:
            mlflow_run_id = logger.export(store, run_id)
            steps = len(store.steps(run_id))
            exported.append({"run_id": run_id, "mlflow_run_id": mlflow_run_id, "steps": steps})
            if not args.json:
                print(f"run {run_id}: MLflow run {mlflow_run_id}, {steps} steps")
    seconds = round(time.perf_counter() - started, 3)
    if args.json:
        print(json.dumps({"tracking_uri": logger.shown_uri, "experiment_id": logger.experiment_id,
                          "seconds": seconds, "runs": exported}))
    else:
        runs = f"{len(exported)} run{'' if len(exported) == 1 else 's'}"
        print(f"{runs} in the MLflow experiment {logger.experiment_name!r} at {logger.shown_uri} ({seconds:.1f} s)",
              file=sys.stderr)
    return 0


def _study_runs(store, studies: list[str]) -> list[int]:
    runs = store.runs()
    known = {r["study"] for r in runs if r["study"]}
    unknown = [name for name in studies if name not in known]
    if unknown:
        raise UserError(f"no study named {', '.join(map(repr, unknown))} in {store.path}; its studies: "
                        f"{', '.join(sorted(known)) or 'none yet'}")
    return [r["id"] for r in runs if r["study"] in studies]
