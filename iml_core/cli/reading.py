"""Reading what runs did: runs, show, notes, check."""

from __future__ import annotations

import json

from iml_core.formats import percent
from iml_core.cli.common import command, db_path, open_store
from iml_core.cli.exits import Exit
from iml_core.errors import UserError
from iml_core.store.integrity import ranges


def add(commands) -> None:
    command(commands, "runs", cmd_runs, "the runs in a database, one line each")

    show = command(commands, "show", cmd_show, "a run's settings, accuracy per step and final notes",
                   json="one JSON object: settings, and per step accuracies, notes length, words changed, "
                        "rule recall, discovery rate and verdicts (tasks with a rule card), alarms, and "
                        "cost by phase")
    show.add_argument("run_id", type=int)

    notes = command(commands, "notes", cmd_notes, "the notes of a run at one step")
    notes.add_argument("run_id", type=int)
    notes.add_argument("--step", type=int, help="the step (default: the last)")

    command(commands, "check", cmd_check, "whether every run's stored steps are whole (steps 0..N, each with its "
            "predictions); exit 1 naming each run with a hole",
            json="one JSON object: runs and steps checked, and each hole with its first missing step")


def cmd_check(args) -> int:
    path = db_path(args)
    if not path.is_file():  # a check creates nothing
        raise UserError(f"there is no database at {path}; pass --db with the file to check")
    with open_store(args) as store:
        holes = store.holes()
        runs = store.runs()
    steps = sum(r["steps_done"] + 1 for r in runs if r["steps_done"] or r["status"] != "queued")
    if args.json:
        print(json.dumps({"db": str(path), "runs": len(runs), "steps": steps,
                          "holes": [hole.as_dict() for hole in holes.values()]}))
    else:
        for hole in holes.values():
            print(f"{hole.describe()}; `iml resume {hole.run_id}` computes it again from "
                  f"step {hole.first}")
        print(f"{len(runs)} runs, {steps} steps checked in {path}: " +
              (f"{len(holes)} with a hole (runs {ranges(holes)})" if holes else "every run whole"))
    return Exit.FAILED if holes else Exit.OK


def cmd_runs(args) -> int:
    with open_store(args) as store:
        rows = store.runs()
    if not rows:
        print(f"no runs in {db_path(args)}; start one with `python -m iml_core run`")
        return 0
    print(f"{'id':>4}  {'status':<11} {'task':<10} {'agent':<22} {'m':>4} {'K':>3} {'B':>4} "
          f"{'steps':>9}  {'final':>6}  {'best':>6}  started")
    for r in rows:
        config = r["config"]
        started = r["started_at"].strftime("%Y-%m-%d %H:%M") if r["started_at"] else "-"
        print(f"{r['id']:>4}  {r['status']:<11} {r['task'][:10]:<10} {r['agent_description'][:22]:<22} "
              f"{config['momentum']:>4} {config['accumulation']:>3} {config['batch_size']:>4} "
              f"{r['steps_done']:>4}/{r['steps_total']:<4}  {percent(r['final_eval_accuracy'], 6)}  "
              f"{percent(r['best_eval_accuracy'], 6)}  {started}")
    return 0


def cmd_show(args) -> int:
    if args.json:
        return _show_json(args)
    with open_store(args) as store:
        run = store.run(args.run_id)
        steps = store.steps(args.run_id)
    print(f"run {run['id']}: {run['status']}" + (f" ({run['error']})" if run["error"] else ""))
    print(f"task {run['task']}, agent {run['agent_description']}")
    for name, value in run["config"].items():
        if name != "initial_notes" or value:
            print(f"  {name:<15} {value}")
    both = run["config"].get("notes_form") == "rule"  # rule notes: scored run by the engine and read by the model
    print(f"\n{'step':>5}  {'train':>6}  {'eval':>6}  {'words':>5}  {'changed':>7}"
          + (f"  {'rule-applied':>12}  {'model-applied':>13}" if both else ""))
    for s in steps:
        print(f"{s['step']:>5}  {percent(s['train_accuracy'], 6)}  {percent(s['eval_accuracy'], 6)}  "
              f"{s['notes_words']:>5}  {s['words_changed']:>7}"
              + (f"  {percent(s['rule_eval_accuracy'], 12)}  {percent(s['model_eval_accuracy'], 13)}" if both else ""))
    if steps:
        print(f"\nnotes after step {steps[-1]['step']}:\n{steps[-1]['notes']}")
    return 0


def _show_json(args) -> int:
    from iml_core.export import stored_run_report  # pandas: only this command needs it

    with open_store(args) as store:
        report = stored_run_report(store, args.run_id)
    print(json.dumps(report))
    return 0


def cmd_notes(args) -> int:
    with open_store(args) as store:
        step = args.step
        if step is None:
            steps = store.steps(args.run_id) or [{"step": 0}]
            step = steps[-1]["step"]
        print(store.notes_at(args.run_id, step))
    return 0
