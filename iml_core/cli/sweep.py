"""A grid of runs, here or on a Ray cluster: sweep."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from iml_core import cluster
from iml_core.cli.common import NUMBERS, add_setting, add_settings, command, given, open_store, \
    say_estimate
from iml_core.cli.exits import Exit, exit_for
from iml_core.formats import percent
from iml_core.config import BUDGET_SETTINGS, DEFAULT_SUBMISSION, RUN_SETTINGS, SETTINGS, \
    SWEEP_BUDGET_SETTINGS, RunConfig, Submission
from iml_core.errors import UserError
from iml_core.manager import RunManager
from iml_core.status import Status
from iml_core.steps import local_steps
from iml_core.store import Store
from iml_core.studies import grid_configs
from iml_core.tracking import URI_HELP, MlflowLogger

# What a run is (its task, agent and model) varies slowest, so that the runs sharing a model
# server are queued together; the seed varies fastest, so a cell's seeds finish close in time.
AXES = sorted((name for name, setting in SETTINGS.items() if setting.axis),
              key=lambda name: (name == "seed", SETTINGS[name].kind in NUMBERS))
GRID_FILE_SETTINGS = {*RUN_SETTINGS, "seeds"}



def add(commands) -> None:
    sweep = command(commands, "sweep", cmd_sweep, "a grid of runs, here or on a Ray cluster",
                    json="one JSON object listing every run at the end")
    sweep.description += ("; a number given as comma-separated values (--momentum 0,0.5,1), or a choice given more "
                          "than once (--prompt-layout system --prompt-layout user), makes an axis of the grid, every "
                          "combination of the axes' values is a run")
    add_settings(sweep, [*AXES, "cache"], lists=True)
    sweep.add_argument("--seeds", type=int, help="seeds per grid cell, counting up from --seed (default 1)")
    sweep.add_argument("--grid", help="a TOML or YAML file of settings: a list makes an axis of the grid, "
                                      "a single value is fixed; flags win over the file")
    sweep.add_argument("--study", help="a name for the runs of this sweep (default: sweep N)")
    sweep.add_argument("--mlflow", metavar="URI", help=f"log every run to MLflow while it goes, step by step: "
                                                       f"{URI_HELP} (optional: requirements-mlflow.txt)")
    add_setting(sweep, SETTINGS["parallel"], f"{DEFAULT_SUBMISSION.parallel} here; on Ray, the cluster's CPUs divided "
                                             "by --num-cpus")
    add_setting(sweep, SETTINGS["max_per_endpoint"])
    budgets = sweep.add_argument_group("budgets (each run's own, and the sweep's together)")
    add_settings(budgets, BUDGET_SETTINGS)
    for name in SWEEP_BUDGET_SETTINGS:
        add_setting(budgets, SETTINGS[name])
    ray = sweep.add_argument_group("Ray (optional: requirements-ray.txt)")
    ray.add_argument("--ray-address", help="'auto' for the cluster this machine is in, 'local' to start one "
                                           "here, or ray://host:10001; default $IML_RAY_ADDRESS; none: no Ray")
    ray.add_argument("--num-cpus", type=float, default=1.0, help="CPUs each run asks for (default 1)")
    ray.add_argument("--num-gpus", type=float, default=0.0, help="GPUs each run asks for (default 0)")
    ray.add_argument("--resource", action="append", default=[], metavar="NAME=AMOUNT",
                     help="a custom resource each run asks for, e.g. vllm-70b=1 (repeatable)")
    ray.add_argument("--worker-retries", type=int, default=2,
                     help="times a run goes on in a new task after its worker is lost (default 2)")


def _grid_file(path: str) -> dict:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot read the grid file {file} ({e.strerror}); check the path") from None
    try:
        if file.suffix == ".toml":
            import tomllib
            values = tomllib.loads(text)
        elif file.suffix in (".yaml", ".yml"):
            import yaml
            values = yaml.safe_load(text)
        else:
            raise UserError(f"the grid file {file} should end in .toml, .yaml or .yml")
    except (ValueError, ImportError) as e:  # tomllib and yaml errors both derive from ValueError
        raise UserError(f"the grid file {file} is not valid {file.suffix[1:].upper()} ({e})") from None
    if not isinstance(values, dict):
        raise UserError(f"the grid file {file} should hold settings as name = value pairs")
    unknown = sorted(set(values) - GRID_FILE_SETTINGS)
    if unknown:
        raise UserError(f"the grid file {file} has unknown settings: {', '.join(unknown)}; "
                        f"known ones: {', '.join(sorted(GRID_FILE_SETTINGS))}")
    return values


def sweep_grid(args) -> tuple[RunConfig, dict[str, list]]:
    """The sweep's fixed settings and its axes, from the grid file and then the flags."""
    values = {**(_grid_file(args.grid) if args.grid else {}), **given(args, [*AXES, "cache", *BUDGET_SETTINGS])}
    seeds = args.seeds if args.seeds is not None else values.pop("seeds", None)
    fixed, axes = {}, {}
    for name, value in values.items():
        if isinstance(value, list) and not value:
            raise UserError(f"{name} has no values; give at least one")
        if isinstance(value, list) and len(value) > 1:
            axes[name] = value
        else:
            fixed[name] = value[0] if isinstance(value, list) else value
    if seeds is not None:
        if "seed" in axes:
            raise UserError("give either several seeds (--seed 0,1,2) or a count (--seeds 3), not both")
        if not isinstance(seeds, int) or seeds < 1:
            raise UserError(f"seeds must be a whole number of at least 1, got {seeds!r}")
        first = fixed.pop("seed", RunConfig().seed)
        axes["seed"] = list(range(first, first + seeds))
    axes = {name: axes[name] for name in AXES if name in axes}
    try:
        base = RunConfig(**fixed)
    except TypeError as e:
        raise UserError(f"bad sweep settings ({e})") from None
    return base, axes


def cmd_sweep(args) -> int:
    base, axes = sweep_grid(args)
    configs = grid_configs(base, axes)
    for config in configs[:1] + configs[-1:]:
        config.check()  # before Ray starts; the manager checks every one before it queues any
    observer = MlflowLogger(args.mlflow) if args.mlflow else None  # a bad URI queues no run
    address = cluster.ray_address(args.ray_address)
    if address and given(args, SWEEP_BUDGET_SETTINGS):
        raise UserError("a sweep's shared budget (--sweep-max-...) lives in this process and cannot reach Ray "
                        "workers; on a cluster give each run its own limit ("
                        + ", ".join(SETTINGS[name].flag for name in BUDGET_SETTINGS) + ")")
    source, parallel = local_steps, args.parallel or DEFAULT_SUBMISSION.parallel
    if address:
        resources = cluster.Resources(args.num_cpus, args.num_gpus, cluster.parse_resources(args.resource))
        source, capacity = cluster.on_cluster(address, resources, args.worker_retries)
        # A large cluster holds more runs than one submission may run at once.
        parallel = args.parallel or min(capacity, SETTINGS["parallel"].high)
    limits = Submission(parallel=parallel, max_per_endpoint=args.max_per_endpoint,
                        **given(args, SWEEP_BUDGET_SETTINGS)).check()
    started = time.perf_counter()
    with open_store(args) as store:
        study = args.study or store.new_study("sweep")
        say_estimate(store, configs)
        manager = RunManager(store, max_parallel=parallel if address else None, source=source)
        run_ids = manager.submit(configs, study=study, limits=limits, observer=observer)
        print(f"{study}: {len(run_ids)} runs ({', '.join(f'{k} x{len(v)}' for k, v in axes.items()) or 'one cell'}), "
              f"{parallel} at once{' on Ray at ' + address if address else ''}", file=sys.stderr)
        try:
            follow(store, manager, run_ids)
        except KeyboardInterrupt:
            for run_id in manager.busy():
                manager.cancel(run_id)
            try:
                manager.join(timeout=60)
            except TimeoutError:
                pass  # its threads end with this process; the next command marks their runs interrupted
            print(f"{study} cancelled; finished runs are kept in {store.path}", file=sys.stderr)
            return Exit.CANCELLED
        runs = [store.run(run_id) for run_id in run_ids]
    summary = {"study": study, "db": str(store.path), "ray_address": address,
               "seconds": round(time.perf_counter() - started, 3),
               "runs": [{"run_id": r["id"], "status": r["status"],
                         **{name: r["config"][name] for name in axes}, "steps": r["steps_done"],
                         "final_eval_accuracy": r["final_eval_accuracy"],
                         "best_eval_accuracy": r["best_eval_accuracy"], "error": r["error"]} for r in runs]}
    if args.json:
        print(json.dumps(summary))
    else:
        for r in summary["runs"]:
            cell = " ".join(f"{name}={r[name]}" for name in axes)
            print(f"run {r['run_id']:>5} {r['status']:<10} {cell:<40} final {percent(r['final_eval_accuracy'])}")
    return exit_for(r["status"] for r in runs)


def follow(store: Store, manager: RunManager, run_ids: list[int]) -> None:
    """One line on stderr as each run ends, until all have."""
    reported: set[int] = set()
    while len(reported) < len(run_ids):
        busy = set(manager.busy())
        for run_id in run_ids:
            if run_id in reported or run_id in busy:
                continue
            run = store.run(run_id)
            reported.add(run_id)
            outcome = f"final {percent(run['final_eval_accuracy'])}" if run["status"] == Status.COMPLETED \
                else (run["error"] or "")
            print(f"run {run_id} {run['status']}: {outcome} [{len(reported)}/{len(run_ids)}]", file=sys.stderr)
        time.sleep(0.2)
