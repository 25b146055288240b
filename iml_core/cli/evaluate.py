"""Scoring notes without learning: evaluate, baseline, ablate."""

from __future__ import annotations

import json
from pathlib import Path

from iml_core.baseline_kinds import Baseline
from iml_core.builders import build_task
from iml_core.cli.common import add_setting, add_settings, command, given, open_store, with_model_defaults
from iml_core.formats import percent
from iml_core.config import SETTINGS, RunConfig
from iml_core.errors import UserError
from iml_core.evaluation import ablate_run, compute_baselines, oracle_notes, score_and_store
from iml_core.prompts import DEFAULT_LAYOUT

# Who scores the notes: the run's own settings (else RunConfig's), changed by any of these given.
SCORER_FLAGS = [*(name for name, setting in SETTINGS.items() if setting.scorer), "cache"]


def add(commands) -> None:
    evaluate = command(commands, "evaluate", cmd_evaluate, "score notes without learning, with any agent or model",
                       json="one JSON object")
    notes_from = evaluate.add_mutually_exclusive_group(required=True)
    notes_from.add_argument("run_id", type=int, nargs="?", help="score this run's notes (with --step)")
    notes_from.add_argument("--notes-file", help="score the notes in this text file")
    notes_from.add_argument("--notes", help="score these notes")
    notes_from.add_argument("--oracle", action="store_true", help="score the rule card written as notes "
                                                                  "(benchmark tasks)")
    evaluate.add_argument("--step", type=int, help="with RUN_ID: the notes after this step (default: the last)")
    scorer = evaluate.add_argument_group("who scores the notes (default: the run's own settings, else the "
                                         "defaults of `run`)")
    add_settings(evaluate, SCORER_FLAGS, lambda name: None, into=scorer)

    baseline = command(commands, "baseline", cmd_baseline, f"a run's baselines: {', '.join(Baseline)}",
                       json="a JSON list")
    baseline.add_argument("run_id", type=int)
    baseline.add_argument("--kind", action="append", choices=[kind.value for kind in Baseline],
                          help="only these (repeatable; default all that apply)")
    baseline.add_argument("--shots", type=int, help="in-context examples (default: as many as fit the run's "
                                                    "note-word cap)")
    # Repeated, it compares layouts in one call: one result per kind and layout.
    add_setting(baseline, SETTINGS["prompt_layout"], "the run's", lists=True)

    ablate = command(commands, "ablate", cmd_ablate, "which sentences of a run's notes carry its accuracy",
                     json="one JSON object")
    ablate.add_argument("run_id", type=int)
    ablate.add_argument("--step", type=int, required=True, help="the notes after this step")
    add_setting(ablate, SETTINGS["eval_size"], "the run's")


def _print_evaluation(evaluation_id: int, evaluation, as_json: bool, *, comparing_layouts: bool = False) -> None:
    if as_json:
        print(json.dumps({"evaluation_id": evaluation_id, **evaluation.summary()}))
    else:
        # A model's description names a layout other than the default (iml_core.agents.llm); next
        # to others, the default is named too.
        described = evaluation.agent_description + (
            f" (prompt layout {DEFAULT_LAYOUT})" if comparing_layouts and evaluation.prompt_layout == DEFAULT_LAYOUT
            else "")
        print(f"evaluation {evaluation_id}: {evaluation.kind} ({evaluation.notes_source}), "
              f"{described}: accuracy {percent(evaluation.accuracy)} on "
              f"{evaluation.eval_size} samples, {evaluation.invalid} invalid")


def cmd_evaluate(args) -> int:
    with open_store(args) as store:
        run = store.run(args.run_id) if args.run_id is not None else None
        base = RunConfig.from_dict(run["config"]).replace(initial_notes="") if run else RunConfig()
        # Scoring answers from the cache unless told not to, whatever the run chose: a call answered
        # before costs nothing and gives the same answer.
        changes = {"cache": True, **with_model_defaults(given(args, SCORER_FLAGS), base)}
        config = base.replace(**changes).check()
        step = None
        if run is not None:
            step = args.step if args.step is not None else run["steps_done"]
            notes, kind, source = store.notes_at(args.run_id, step), "notes", f"run {args.run_id} step {step}"
        elif args.oracle:
            notes = oracle_notes(build_task(config), config.agent, config.notes_form)
            kind, source = Baseline.ORACLE, "the rule card"
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
        evaluation_id, evaluation = score_and_store(store, config, notes, run_id=args.run_id, step=step, kind=kind,
                                                    source=source)
    _print_evaluation(evaluation_id, evaluation, args.json)
    return 0


def cmd_baseline(args) -> int:
    with open_store(args) as store:
        results = compute_baselines(store, args.run_id, args.kind, shots=args.shots, layouts=args.prompt_layout)
    if args.json:
        print(json.dumps([{"evaluation_id": i, **e.summary()} for i, e in results]))
    else:
        for evaluation_id, evaluation in results:
            _print_evaluation(evaluation_id, evaluation, False, comparing_layouts=bool(args.prompt_layout))
    return 0


def cmd_ablate(args) -> int:
    with open_store(args) as store:
        whole_id, whole, effects = ablate_run(store, args.run_id, args.step, args.eval_size)
    if args.json:
        print(json.dumps({"evaluation_id": whole_id, "accuracy": whole.accuracy, "eval_size": whole.eval_size,
                          "sentences": [{"sentence": e.sentence, "text": e.text, "accuracy_without": e.accuracy_without,
                                     "change": e.change, "answers_changed": e.answers_changed,
                                     "evaluation_id": i} for i, e in effects]}))
    else:
        print(f"notes of run {args.run_id} after step {args.step}: accuracy {percent(whole.accuracy)} "
              f"on {whole.eval_size} samples")
        for _, e in effects:
            print(f"  sentence {e.sentence:>3}: {100 * e.change:+6.1f} points, {e.answers_changed:>4} answers changed  "
                  f"{e.text[:70]}")
    return 0
