"""Small pieces several pages share."""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from iml_core import analysis, comparing, evaluation, render
from iml_core import formats
from iml_core.baseline_kinds import Baseline
from iml_core.errors import IMLError
from iml_core.models import default_model_choice, find_models
from iml_core.report import report_html, report_title, runs_of_study
from iml_core.status import GOING
from iml_core.store import Store
from iml_core.tasks import PRESETS, RULES_PREFIX, saved_tasks
from studio.engine import database_path, engine, tasks_dir

# Which runs the user picked on one page, for the next (Runs -> Notes, Runs -> Compare, New run -> Live).
SELECTED = "selected_runs"
# The model settings made on the Models page, used by New run (a RunConfig's LLM fields; no key).
MODEL = "model_settings"
# Tasks generated on the Data page and kept for New run: the store's choice, so every tab has them.
GENERATED = "generated_tasks"
MOST_GENERATED = 20
# The MLflow tracking URI that runs started on New run log to: the store's choice, so every tab has it.
MLFLOW = "mlflow"


def model_settings() -> dict:
    """The model chosen on the Models page: this tab's choice, else the one saved in the database
    (shared by every tab and reload), else the only model on this machine."""
    if MODEL not in st.session_state:
        store = current()[0]
        st.session_state[MODEL] = store.choice("model") or default_model_choice(models_here())
    return dict(st.session_state[MODEL])


def save_model_settings(settings: dict) -> None:
    """Keeps the choice for this tab and, when it changed, for every other tab and reload."""
    store = current()[0]
    if store.choice("model") != settings:
        store.save_choice("model", settings)
    st.session_state[MODEL] = settings


@st.cache_data(ttl=60, show_spinner="Looking for models on this machine...")
def models_here() -> list:
    return find_models()


def model_names(model: str) -> list[str]:
    """The names a model's earlier runs are stored under: as chosen, and a model here by its file
    (read from the cached model list, not a scan per rerun)."""
    return [model, *(m.path for m in models_here() if m.name == model)]


def estimate_caption(configs, *, with_baselines: bool = False) -> None:
    """What runs of the chosen model (and, for a study, their baselines) will ask of it, said before
    they start (iml_core.analysis.estimate)."""
    models = {c.model for c in configs if c.uses_model}
    if models:
        names = [name for model in models for name in model_names(model)]
        shared = evaluation.shared_baselines(configs) if with_baselines else []
        store = current()[0]
        said = analysis.estimate(configs, store.call_tokens(names), shared, store.call_seconds(names)).sentence()
        st.caption("Before you start" + (", with the baselines" if with_baselines else "") + ": " + said)


def generated_tasks() -> list[str]:
    """The specs of the tasks generated on the Data page for New run, the latest first."""
    return list((current()[0].choice(GENERATED) or {}).get("specs", []))


def keep_generated_task(spec: str) -> None:
    specs = [spec, *(s for s in generated_tasks() if s != spec)][:MOST_GENERATED]
    current()[0].save_choice(GENERATED, {"specs": specs})


def task_choices() -> dict[str, str]:
    """Every task a run can take, for a selectbox: the presets, the tasks generated on the Data
    page, then the CSV tasks saved beside the database (also the Data page)."""
    return ({name: f"{name} (preset)" for name in PRESETS}
            | {spec: f"{spec.removeprefix(RULES_PREFIX)} (generated)" for spec in generated_tasks()}
            | {str(p): f"{p.stem} (CSV)" for p in saved_tasks(tasks_dir())})


def current() -> tuple[Store, object]:
    return engine(database_path())


@st.cache_resource(show_spinner="Opening the MLflow tracking store...")
def mlflow_logger(uri: str):
    """One logger per tracking URI in this server process, shared by every run that logs to it.
    MLflow is imported only here, when a URI is given; without it the UserError says how to install it."""
    from iml_core.tracking import MlflowLogger

    return MlflowLogger(uri)


def run_label(row) -> str:
    return (f"run {row['id']} · {comparing.task_words(row['task'])} · {comparing.run_kind(row)} · "
            f"momentum {row['momentum']:g}, accumulation {row['accumulation']}, batch {row['batch_size']}, "
            f"seed {row['seed']} · {row['status']}")


def pick_run(runs: pd.DataFrame, key: str, label: str = "Run") -> int | None:
    """A selectbox over runs, starting at the run picked on another page if there is one."""
    if runs.empty:
        return None
    ids = runs["id"].tolist()
    labels = {row["id"]: run_label(row) for _, row in runs.iterrows()}
    chosen = st.session_state.get(SELECTED) or []
    index = ids.index(chosen[0]) if chosen and chosen[0] in ids else 0
    return st.selectbox(label, ids, index=index, format_func=labels.get, key=key)


def baselines_button(store: Store, run_ids, key: str) -> None:
    """A button that computes the runs' missing baselines, saying first what that will cost."""
    plan = evaluation.plan_baselines(store, run_ids)
    if not plan.missing:
        return
    kinds = [kind for kind in Baseline if any(kind in missing for missing in plan.missing.values())]
    if not plan.model_calls:
        cost = " (no model calls)"
    elif not plan.tokens:  # the runs have made no evaluation call yet to measure a call by
        cost = f": at most {plan.model_calls} model calls (their tokens are measured from the run's first evaluation)"
    else:
        cost = (f": at most {plan.model_calls} model calls (about {plan.tokens:,} tokens"
                + (f", ${plan.cost:.4f})" if plan.cost else ")"))
    if st.button(f"Compute the missing baselines ({', '.join(kinds)}) of {len(plan.missing)} run(s){cost}", key=key):
        with st.spinner("Scoring the baselines..."):
            try:
                for run_id, missing in plan.missing.items():
                    evaluation.compute_baselines(store, run_id, missing)
            except IMLError as e:
                show_problem(str(e))
                return
        st.rerun()


# Headers a person reads: a column's words where its name from the code would not do.
HEADERS = {"id": "run", "run_id": "run", "agent_description": "agent", "notes_source": "notes from",
           "removed_sentence": "sentence left out", "eval_size": "eval samples", "tokens_in": "tokens in",
           "tokens_out": "tokens out", "created_at": "created", "started_at": "started", "finished_at": "finished",
           "final_eval_accuracy": "final eval", "best_eval_accuracy": "best eval", "batch_size": "batch",
           "kind": "what the run is", "final_rule_applied_accuracy": "final, run by the engine",
           "final_model_applied_accuracy": "final, read by the model", "notes_form": "notes form",
           "prompt_layout": "prompt layout"}


def header(column: str) -> str:
    return HEADERS.get(column, column.replace("_", " "))


def table(frame: pd.DataFrame, *, key: str, percent: tuple[str, ...] = (), points: tuple[str, ...] = (),
          spreads: tuple[str, ...] = (), column_config: dict | None = None, **options):
    """A frame as people read it: headers in words, shares as percentages to one decimal, changes
    of a share in points (signed), spreads of shares in points (a size: no sign), and an empty cell
    where there is nothing (formats.BLANK, never `None`). The values stay numbers underneath (a Styler formats
    them), so columns still sort as numbers."""
    formatters = ({column: formats.percent for column in percent}
               | {column: lambda change: formats.points(change, signed=True) for column in points}
               | {column: formats.points for column in spreads})
    formatters |= {column: "{:g}" for column in frame.select_dtypes("float").columns if column not in formatters}
    formatters |= {column: lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S")  # to the second, as people read
                   for column in frame.select_dtypes("datetime").columns if column not in formatters}
    styled = frame.style.format(formatters, na_rep=formats.BLANK).format(
        na_rep=formats.BLANK, subset=[column for column in frame.columns if column not in formatters])
    config = {column: header(column) for column in frame.columns} | (column_config or {})
    # The grid draws a missing value as a grey "None" unless told what to draw instead.
    return st.dataframe(styled, hide_index=True, key=key, column_config=config, placeholder="", **options)


def show_problem(text: str, kind: str = "error") -> None:
    """Problems quote settings, file names, CSV headers and server answers: shown escaped."""
    st.html(render.alert(text, kind))


@st.cache_data(max_entries=8, show_spinner=False)
def _alarm_text(db_path: str, progress: tuple) -> dict[int, str]:
    return analysis.alarm_counts(engine(db_path)[0].churn_frame()).to_dict()


def alarm_text(runs: pd.DataFrame) -> dict[int, str]:
    """Each run's alarms as a short text, recomputed only when some run has moved on (over 1,000
    runs they take about 50 ms, and the Runs page reruns on every tick of a row)."""
    progress = tuple(zip(runs["id"].tolist(), runs["steps_done"].tolist(), runs["status"].tolist(), strict=True))
    return _alarm_text(database_path(), progress)


def report_button(store: Store, run_ids, key: str) -> None:
    """A download of the runs' study report (iml_core.report), made only when pressed: it holds
    plotly.js (about 5 MB), which a page must not rebuild on every rerun. Keep it out of a fragment
    that reruns on a timer: each rerun drops the file being made before the browser fetches it."""
    ids = sorted(int(i) for i in run_ids)
    title = report_title(store, ids)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-.") or "report"
    st.download_button(f"Download the report of {len(ids)} run{'s' if len(ids) != 1 else ''} (HTML)",
                       data=lambda: report_html(store, ids, title), file_name=f"{name}.html", mime="text/html",
                       key=key, on_click="ignore", disabled=not ids,
                       help="One HTML file that opens offline in any browser: the settings that differ, the curves "
                            "with their baselines, final accuracy over seeds, heat maps, alarms, cost by phase and "
                            "the best run's notes (`iml report` writes the same)")


def queue_study(configs, *, label: str, name: str, limits, state_key: str) -> None:
    """Queues a study's runs (named `label N: name`) with their baselines beside them, and makes
    it the page's chosen study (`state_key`)."""
    store, manager = current()
    study = store.new_study(label) + f": {name}"
    try:
        run_ids = manager.submit(configs, study=study, limits=limits)
        manager.run_beside("baselines", evaluation.baselines_job(store, run_ids))
    except IMLError as e:
        show_problem(str(e))
    else:
        st.session_state[state_key] = study


def chosen_study(label: str, *, state_key: str, empty: str) -> str:
    """The study of this kind to show (the latest unless another is chosen) with its report's
    download, or the page stops with `empty`. Chosen outside any fragment that redraws on a timer:
    the download must not be redrawn while its file is made."""
    store = current()[0]
    studies = [s for s in store.studies() if s.startswith(label)]
    if not studies:
        st.info(empty)
        st.stop()
    if st.session_state.get(state_key) not in studies:
        st.session_state[state_key] = studies[0]
    study = st.selectbox("Study", studies, key=state_key)
    report_button(store, runs_of_study(store, study), key=f"{state_key}_report")
    return study


def study_runs(study: str) -> pd.DataFrame:
    """The runs of a study, with a bar of how many have finished."""
    runs = current()[0].runs_frame()
    runs = runs[runs["study"] == study]
    going = int(runs["status"].isin(GOING).sum())
    st.progress(1 - going / len(runs), text=f"{len(runs) - going} of {len(runs)} runs finished"
                if going else f"all {len(runs)} runs finished")
    return runs
