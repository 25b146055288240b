"""SETTINGS describes every setting once: the command line's flags (and the dashboard's widgets) agree with it."""

import argparse
import re
from pathlib import Path

import pytest

from iml_core import cli
from iml_core.config import SETTINGS, RunConfig
from iml_core.registry import BACKENDS


def subcommands(parser=None) -> dict[str, argparse.ArgumentParser]:
    parser = parser or cli.build_parser()
    (commands,) = [a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return commands


def setting_flags(command: str) -> dict[str, argparse.Action]:
    return {a.dest: a for a in subcommands()[command]._actions if a.dest in SETTINGS}


SETTING_OPTIONS = [(command, dest) for command in subcommands() for dest in setting_flags(command)]


@pytest.mark.parametrize("command, name", SETTING_OPTIONS, ids=[f"{c} {n}" for c, n in SETTING_OPTIONS])
def test_every_setting_flag_agrees_with_its_setting(command, name):
    setting, action = SETTINGS[name], setting_flags(command)[name]
    assert action.default is None  # each command fills what was not given its own way
    if setting.kind == "flag":
        on = getattr(RunConfig(), name)
        assert action.option_strings == [("--no-" if on else "--") + name.replace("_", "-")]
        assert action.const is (not on)
        return
    assert action.option_strings == [setting.flag]
    if setting.kind == "choice":
        assert tuple(action.choices) == setting.values
    elif setting.kind == "text":
        assert action.type("some text") == "some text"
    else:
        assert setting.range_text() in action.help
        parsed = action.type(str(setting.low))
        assert isinstance(parsed, list) == (command == "sweep" and setting.axis)  # a sweep's axes take lists
        value = parsed[0] if isinstance(parsed, list) else parsed
        assert value == setting.low and type(value) is (int if setting.kind == "integer" else float)
        for outside in (setting.low - 1, setting.high + 1):
            with pytest.raises(argparse.ArgumentTypeError, match=f"^{re.escape(setting.label)} must be between "):
                action.type(str(outside))


def test_each_command_takes_the_settings_it_may_change():
    axes = {name for name, setting in SETTINGS.items() if setting.axis}
    scorer = {name for name, setting in SETTINGS.items() if setting.scorer}
    assert axes <= set(setting_flags("sweep"))
    assert {"parallel", "max_per_endpoint"} <= set(setting_flags("sweep"))
    assert scorer <= set(setting_flags("evaluate"))
    run_settings = {name for name, setting in SETTINGS.items() if setting.part != "submission"}
    assert set(setting_flags("run")) == run_settings - {"initial_notes"}  # notes to start from: a fork's


def test_choices_are_read_from_the_registry_when_the_parser_is_built(monkeypatch):
    monkeypatch.setitem(BACKENDS, "later-backend", BACKENDS["openai"])
    assert "later-backend" in setting_flags("run")["backend"].choices


@pytest.mark.parametrize("argv, setting", [
    (["run", "--momentum", "1.5"], "momentum"),
    (["sweep", "--batch-size", "8,0"], "batch_size"),
    (["fork", "1", "--step", "1", "--temperature", "3"], "temperature"),
    (["evaluate", "--oracle", "--eval-size", "0"], "eval_size"),
    (["ablate", "1", "--step", "1", "--eval-size", "100001"], "eval_size"),
    (["sweep", "--parallel", "4097"], "parallel"),
])
def test_a_value_out_of_range_exits_2_naming_the_setting_and_its_range(tmp_path, capsys, argv, setting):
    db = tmp_path / "untouched.duckdb"
    assert cli.main([*argv, "--db", str(db)]) == 2
    low, high = SETTINGS[setting].low, SETTINGS[setting].high
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{SETTINGS[setting].label} must be between {low} and {high}" in error, error
    assert not db.exists()


def test_the_cli_docstring_lists_every_command():
    listed = [name for line in cli.__doc__.splitlines() if line.startswith("- ")
              for name in line.split(":", 1)[1].replace(",", " ").split()]
    assert sorted(listed) == sorted(subcommands())
    assert len(listed) == len(set(listed))


# --- the dashboard: every widget of a setting takes its range from SETTINGS ---------------------

def _page(db_path, page, *setup):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=60)
    at.run()
    at.switch_page(page)
    at.run()
    for step in setup:
        step(at)
        at.run()
    assert not at.exception, at.exception
    return at


def _setting_of(key: str) -> str | None:
    for prefix in ("paper_", "model_", "fork_", "sweep_", ""):
        if key.startswith(prefix) and key[len(prefix):] in SETTINGS:
            return key[len(prefix):]
    return None


def _ranges_agree(at) -> list[str]:
    """Every bounded widget of a setting on the page, checked; returns the settings seen."""
    seen = []
    for widget in [*at.number_input, *at.slider]:
        name = _setting_of(widget.key)
        assert widget.min is not None and widget.max is not None, f"{widget.key} has no bounds"
        if name is None:
            continue  # not a run setting (e.g. seeds per sweep cell), bounded all the same
        setting = SETTINGS[name]
        assert (widget.min, widget.max) == (setting.low, setting.high), widget.key
        seen.append(name)
    return seen


def test_every_widget_of_a_setting_on_every_page_has_the_range_of_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("IML_DB", str(tmp_path / "pages.duckdb"))
    new_run = _page(tmp_path, "pages/new_run.py", lambda at: at.toggle(key="sweep").set_value(True))
    assert {"momentum", "accumulation", "batch_size", "steps", "eval_size", "eval_every", "max_note_words", "seed",
            "label_noise", "parallel"} <= set(_ranges_agree(new_run))
    paper = _page(tmp_path, "pages/paper.py")
    assert {"steps", "batch_size", "eval_size", "parallel"} <= set(_ranges_agree(paper))
    for number in ("steps", "batch_size", "eval_size"):  # the Paper view starts from RunConfig()'s
        assert paper.number_input(key=f"paper_{number}").value == getattr(RunConfig(), number)

    local = _page(tmp_path, "pages/models.py", lambda at: at.radio(key="model_backend").set_value("llama-server"))
    assert {"n_gpu_layers", "n_ctx", "n_threads", "slots"} <= set(_ranges_agree(local))
    remote = _page(tmp_path, "pages/models.py", lambda at: at.radio(key="model_backend").set_value("openai"))
    assert {"max_parallel", "timeout", "max_retries", "price_in", "price_out"} <= set(_ranges_agree(remote))
    assert remote.selectbox(key="model_structured_output").options == [
        SETTINGS["structured_output"].describe(v) for v in SETTINGS["structured_output"].values]


def test_the_budget_settings_are_the_limits_a_budget_reads():
    from iml_core.budget import LIMITS, Limits
    from iml_core.config import BUDGET_SETTINGS, SETTINGS, SWEEP_BUDGET_SETTINGS, RunConfig, Submission

    # Named once, in Limits; the settings, their flags and the sweep's follow.
    assert BUDGET_SETTINGS == [Limits.setting(part) for part in LIMITS] == ["max_cost", "max_tokens", "max_calls",
                                                                            "max_minutes"]
    assert SWEEP_BUDGET_SETTINGS == [f"sweep_{name}" for name in BUDGET_SETTINGS]
    assert [SETTINGS[name].flag for name in SWEEP_BUDGET_SETTINGS] == [Limits.flag(p, "sweep_") for p in LIMITS]
    config = RunConfig(max_cost=1.5, max_tokens=10, max_calls=3, max_minutes=2.0)
    assert Limits.of(config) == Limits(1.5, 10, 3, 2.0)
    assert Limits.of(Submission(sweep_max_calls=7), prefix="sweep_") == Limits(calls=7)


def test_no_setting_s_help_names_another_by_its_code_name():
    import re

    from iml_core.config import SETTINGS

    code_names = {name for name in SETTINGS if "_" in name}
    said = {name: sorted(set(re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", setting.help)) & code_names)
            for name, setting in SETTINGS.items()}
    assert {name: found for name, found in said.items() if found} == {}
