"""What the commands share: one-line errors, the --json and --db flags, the database, and the
flags of the settings, each made from its row in SETTINGS."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Iterable

from iml_core.config import RUN_DEFAULTS, SETTINGS, RunConfig, Setting
from iml_core.errors import UserError
from iml_core.models import is_local_model, resolve_model
from iml_core.registry import AGENTS, default_backend, model_agent
from iml_core.store import DEFAULT_DB, Store, database_path

NUMBERS = ("integer", "number")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        # One line, not argparse's usage block: the message names the flag and the problem.
        command = " ".join(["python -m iml_core", *self.prog.split()[1:], "--help"])  # prog: "iml" or "iml run"
        raise UserError(f"{message} (see `{command}`)")


def command(commands, name: str, handler: Callable[[argparse.Namespace], int], help: str, *,
            json: str | None = None, db: bool = True) -> argparse.ArgumentParser:
    """A subcommand, with `--json` (printing what `json` says) and `--db` where it takes them."""
    parser = commands.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=handler)
    if json:
        parser.add_argument("--json", action="store_true", help=f"print {json}")
    if db:
        parser.add_argument("--db", help=f"DuckDB file (default: $IML_DB, else {DEFAULT_DB})")
    return parser


def db_path(args) -> Path:
    return database_path(args.db)


def open_store(args) -> Store:
    """The database, shared with the dashboard and other commands (docs/ARCHITECTURE.md §4): a run
    it finds `running` or `queued` whose process has ended is marked `interrupted`, ready to resume."""
    store = Store(db_path(args))
    store.mark_interrupted()
    return store


def run_default(name: str) -> str | None:
    """What a run takes for a setting its command line leaves out, in words for the flag's help."""
    if name == "agent":
        return f"{model_agent()} when --model is given, else {RUN_DEFAULTS.agent}"
    value = getattr(RUN_DEFAULTS, name, None)
    if value is None or value == "" or isinstance(value, bool):
        return None  # nothing, or said by the setting's own help
    return f"{value:g}" if isinstance(value, float) else str(value)


def given(args, names: Iterable[str]) -> dict:
    """The settings among `names` that the command line gave (every setting's flag defaults to None)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def with_model_defaults(changes: dict, base: RunConfig = RUN_DEFAULTS) -> dict:
    """`changes` to `base` with what a --model implies: without --agent, an agent that calls a model;
    without --backend, the backend that claims the model (iml_core.registry.default_backend)."""
    changes = dict(changes)
    if changes.get("model") and "agent" not in changes:
        changes["agent"] = model_agent()
    uses_model = AGENTS[changes.get("agent", base.agent)].uses_model
    if uses_model and "backend" not in changes and (changes.get("model") or not base.backend):
        changes["backend"] = default_backend(changes.get("model", base.model), changes.get("base_url", base.base_url))
    return changes


def _value(setting: Setting) -> Callable[[str], object]:
    """A flag's text as the setting's value, refused with the setting's own sentence (its name and
    range) when it is out of range, so no command gets further with it."""
    convert = {"integer": int, "number": float}.get(setting.kind, str)

    def parse(text: str):
        if setting.optional and not text.strip():
            return None
        try:
            value = convert(text)
        except ValueError:
            value = text  # problem() names it: "must be a whole number, got 'abc'"
        problem = setting.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def _values(setting: Setting) -> Callable[[str], list]:
    parse = _value(setting)

    def parse_list(text: str) -> list:
        return [parse(part.strip()) for part in text.split(",") if part.strip()]

    return parse_list


def add_setting(parser, setting: Setting, default: str | None = None, *, lists: bool = False) -> None:
    """The flag of one setting: its type, range or choices and help from SETTINGS, and None when not
    given, so that each command fills the rest its own way (a run from RunConfig, a fork from the old
    run). `default` says in words what that is; with `lists` (a sweep) a number takes comma-separated
    values and a choice may be given again (a list of each value given)."""
    # A choice is repeated rather than comma-separated so that argparse checks each value against the choices.
    repeated = lists and setting.kind == "choice"
    lists = lists and setting.kind in NUMBERS
    notes = [setting.range_text()] if setting.kind in NUMBERS else []
    notes += [f"default {default}"] if default else []
    notes += ["repeatable: give it once per value"] if repeated else []
    help = (setting.help + (f" ({'; '.join(notes)})" if notes else "")).replace("%", "%%")
    if repeated:
        parser.add_argument(setting.flag, choices=setting.values, default=None, action="append", help=help)
    elif setting.kind == "flag":
        # A flag that is on unless turned off is given as --no-NAME.
        on = getattr(RUN_DEFAULTS, setting.name)
        parser.add_argument(("--no-" if on else "--") + setting.name.replace("_", "-"), dest=setting.name,
                            action="store_const", const=not on, default=None,
                            help=f"{'do not ' if on else ''}{setting.label.lower()}: {help}")
    elif setting.kind == "choice":
        parser.add_argument(setting.flag, choices=setting.values, default=None, help=help)
    else:
        parser.add_argument(setting.flag, type=_values(setting) if lists else _value(setting), default=None, help=help)


def add_settings(parser, names: Iterable[str], default: Callable[[str], str | None] = run_default, *,
                 lists: bool = False, into=None) -> None:
    """The flags of `names`, in SETTINGS' order: into `into` when given, else a model's settings in
    groups of their own so that `--help` shows first what every run takes."""
    groups: dict[bool, argparse._ArgumentGroup] = {}
    agents = " or ".join(name for name, kind in AGENTS.items() if kind.uses_model)
    titles = {False: f"LLM agent (--agent {agents}); the key comes from $OPENAI_API_KEY, never a flag",
              True: "LLM settings"}
    wanted = set(names)
    for name, setting in SETTINGS.items():
        if name not in wanted:
            continue
        target = into or parser
        if into is None and setting.part == "model":
            numeric = setting.kind in NUMBERS
            if numeric not in groups:
                groups[numeric] = parser.add_argument_group(titles[numeric])
            target = groups[numeric]
        add_setting(target, setting, default(name), lists=lists)


def say_estimate(store: Store, configs, baselines=()) -> None:
    """On stderr, before runs of a model (and the baselines of `baselines`) start: at most how many
    calls, and about how many tokens and what cost, from this model's earlier calls here
    (iml_core.analysis.estimate)."""
    models = {c.model for c in configs if c.uses_model}
    if not models:
        return
    from iml_core.analysis import estimate  # pandas: only the commands that start runs need it
    names = set(models)
    for model in models:  # a model here is stored with its runs by its file
        if is_local_model(model):
            names |= {str(resolve_model(model)), str(resolve_model(model).resolve())}
    said = estimate(configs, store.call_tokens(sorted(names)), baselines).sentence()
    print(f"Before it starts{', with the baselines' if baselines else ''}: {said}", file=sys.stderr)
