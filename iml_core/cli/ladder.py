"""A model up a difficulty ladder of generated tasks: ladder (iml_core.studies.LADDER)."""

from __future__ import annotations

import json
import sys

from iml_core import evaluation
from iml_core.baseline_kinds import Baseline
from iml_core.cli.common import add_setting, add_settings, command, given, open_store, say_estimate, \
    with_model_defaults
from iml_core.cli.exits import Exit, exit_for
from iml_core.cli.sweep import follow
from iml_core.formats import percent
from iml_core.config import DEFAULT_SUBMISSION, RUN_SETTINGS, SETTINGS, RunConfig, Submission
from iml_core.errors import RunFailed, UserError
from iml_core.manager import RunManager
from iml_core.registry import AGENTS
from iml_core.studies import LADDER, LADDER_SEEDS, ladder_study

# The ladder sets the task, its noise and the seed of each run; everything else is the caller's.
LADDER_FLAGS = [name for name in RUN_SETTINGS if name not in ("task", "label_noise", "initial_notes", "learner")]


def add(commands) -> None:
    ladder = command(commands, "ladder", cmd_ladder, "a model over tasks of rising difficulty, with its baselines",
                     json="one JSON object: every rung's accuracies and verdicts, and the verdict in words")
    ladder.description += ("; rungs: " + "; ".join(f"{n}. {rung.name}" for n, rung in enumerate(LADDER, 1))
                           + f". Each rung runs --seeds seeds (default {LADDER_SEEDS}), each with its own rule")
    add_settings(ladder, LADDER_FLAGS)
    add_setting(ladder, SETTINGS["learner"], f"{RunConfig().learner}; several compare learners on the same rules",
                lists=True)
    ladder.add_argument("--seeds", type=int, default=LADDER_SEEDS, help=f"seeds per rung (default {LADDER_SEEDS})")
    ladder.add_argument("--rungs", type=_numbers, metavar="N,N...",
                        help="climb only these rungs, e.g. 1,2 (default: every rung); a costly model's first look")
    ladder.add_argument("--study", help="a name for the ladder's runs (default: ladder N)")
    add_setting(ladder, SETTINGS["parallel"], str(DEFAULT_SUBMISSION.parallel))


def cmd_ladder(args) -> int:
    from iml_core import ladder_results  # pandas: here only, not in every command

    settings = with_model_defaults(given(args, LADDER_FLAGS))
    if settings.get("model") and "prompt_layout" not in settings \
            and AGENTS[settings.get("agent", RunConfig().agent)].uses_model:
        from iml_core.layout_probe import suggested_layout

        advice = suggested_layout(settings["model"])
        if advice is not None:
            settings["prompt_layout"] = advice.layout
            print(f"prompt layout {advice.layout} for {settings['model']}, {advice.reason}; --prompt-layout "
                  "chooses another", file=sys.stderr)
    base = RunConfig(**settings)
    configs = ladder_study(base, args.seeds, args.rungs, args.learner)
    limits = Submission(parallel=args.parallel or DEFAULT_SUBMISSION.parallel).check()
    with open_store(args) as store:
        study = args.study or store.new_study("ladder") + f": {AGENTS[base.agent].label.split(' (')[0]}"
        manager = RunManager(store)
        say_estimate(store, configs, evaluation.shared_baselines(configs))
        run_ids = manager.submit(configs, study=study, limits=limits)
        learners = len(args.learner or [base.learner])
        print(f"{study}: {len(run_ids)} runs ({len(run_ids) // args.seeds // learners} rungs x {learners} learners x "
              f"{args.seeds} seeds), then their baselines", file=sys.stderr)
        follow(store, manager, run_ids)
        failed = ""
        try:
            evaluation.baselines_job(store, run_ids)()
        except RunFailed as e:  # the rungs whose baselines were computed still say what they can
            failed = str(e)
        runs = store.runs_frame()
        statuses = set(runs[runs["id"].isin(run_ids)]["status"])
        table = ladder_results.ladder_table(runs[runs["id"].isin(run_ids)], store.baselines(run_ids))
    verdict = ladder_results.ladder_verdict(table)
    if args.json:
        rows = json.loads(table.to_json(orient="records"))
        print(json.dumps({"study": study, "db": str(store.path), "run_ids": run_ids, "rungs": rows,
                          "verdict": verdict, "baselines_failed": failed or None}))
    else:
        heads = {Baseline.NO_NOTES: "floor", Baseline.MAJORITY: "major", Baseline.IN_CONTEXT: "in-ctx",
                 Baseline.EQUAL_TOKEN: "eq-tok", Baseline.ORACLE: "oracle", "learned": "learned"}
        print(f"{'rung':<42} {'learner':<8} " + " ".join(f"{heads[c]:>7}" for c in ladder_results.LADDER_COLUMNS)
              + "  applies learns")
        for row in ladder_results.ladder_in_words(table).fillna({"applies": "-", "learns": "-"}).to_dict("records"):
            shares = " ".join(percent(row[c], 7) for c in ladder_results.LADDER_COLUMNS)
            print(f"{row['rung']}. {row['task']:<39} {row['learner']:<8} {shares}   {row['applies']:<7} "
                  f"{row['learns']}")
        print(verdict)
        if failed:
            print(f"iml: failed: {failed}", file=sys.stderr)
    return Exit.FAILED if failed else exit_for(statuses)


def _numbers(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--rungs takes rung numbers separated by commas, like 1,2; got {text!r}") from None
