import streamlit as st

from iml_core import analysis
from iml_core.progress import WATCHES
from iml_core.registry import AGENTS
from iml_core.budget import Limits, spent_against, spent_so_far
from iml_core.config import RunConfig
from iml_core.status import ACTIVE, GOING, Status
from iml_core import charts, render
from iml_core.formats import percent
from studio.ui import baselines_button, current, pick_run, show_problem

store, manager = current()
st.title("Live")


def step_progress(progress, uses_model: bool) -> str:
    """Where the step in flight is, in words: a model's step takes minutes on a CPU."""
    phase = charts.PHASE_LABELS[progress.phase]
    words = [f"Step {progress.step}: {phase}"]
    if uses_model and progress.expected:
        words[0] += f", {progress.answered} of {progress.expected} model calls"
    if uses_model:
        words.append(f"{progress.calls} calls and {progress.tokens_in + progress.tokens_out:,} tokens so far")
    words.append(f"{progress.step_seconds:.0f} s into the step")
    left = progress.seconds_left_in_phase
    if left is not None:
        words.append(f"about {left:.0f} s left in {phase}")
    return " · ".join(words)



# Every second while a run goes, here or in a command. An idle tab draws nothing anew: every 3 s it
# looks whether the file has been written (a stat, no open), and only then whether a run has started,
# so that it leaves a small machine's cores to the model.
GOING_NOW = frozenset(store.going_runs())
REFRESH = 1.0 if manager.busy() or GOING_NOW else None
IDLE_LOOK = 3.0


def written_at() -> tuple:
    return tuple(path.stat().st_mtime_ns if path.exists() else 0
                 for path in (store.path, store.path.with_name(store.path.name + ".wal")))


@st.fragment(run_every=IDLE_LOOK)
def look_for_runs(seen: tuple) -> None:
    if written_at() != seen and frozenset(store.going_runs()) != GOING_NOW:
        st.rerun()  # the whole page, now refreshing every second


@st.fragment(run_every=REFRESH)
def live() -> None:
    store.mark_interrupted()  # a command killed while this page was open left its run `running`
    runs = store.runs_frame()
    if runs.empty:
        st.info("No runs yet. Start one on the New run page.")
        return
    going = runs[runs["status"].isin(GOING)].sort_values(["status", "id"], ascending=[False, True])
    st.caption(f"{len(going)} run(s) going · " + ("refreshes every second" if REFRESH else
                                                  f"looks every {IDLE_LOOK:g} s for a run that starts"))
    run_id = pick_run(going if not going.empty else runs, key="live_run")
    run = store.run(run_id)
    steps = store.steps_frame([run_id])

    done, total = run["steps_done"], run["steps_total"]
    left = analysis.seconds_left(run, steps) if run["status"] in ACTIVE else None
    eta = "" if left is None else f" · about {left:.1f} s left" if left < 10 else f" · about {left:.0f} s left"
    # The step in flight, as the line below names it: "step 1" while step 1 runs, not the 0 done.
    at = f"step {done + 1} of {total} in flight" if run["status"] == Status.RUNNING and done < total else \
        f"step {done} of {total}"
    st.progress(done / total if total else 0.0, text=f"{run['status']}: {at}{eta}")
    worker = getattr(manager.source, "worker", None)  # only a cluster source knows where a run is
    where = worker(run_id) if worker is not None and run["status"] in GOING else None
    if where:
        st.caption(f"Computed on the Ray cluster: node {where['node']}, worker pid {where['pid']}; "
                   "each step is committed here.")
    progress = WATCHES.now(run_id) if run["status"] in GOING else None
    if progress is not None:
        st.html(render.caption(step_progress(progress, AGENTS[run["agent"]].uses_model)))
    if run["notice"]:
        show_problem(f"Run {run_id} is retrying: {run['notice']}", "warning")
    if run["error"]:
        show_problem(f"Run {run_id} stopped: {run['error']}",
                     "warning" if run["status"] == Status.BUDGET_REACHED else "error")
    limits = Limits.of(RunConfig.from_dict(run["config"]))
    if limits:
        st.caption(f"Budget: {spent_against(limits, spent_so_far(store.run_spent(run_id), progress))}")

    a, b, c, d = st.columns(4)
    last_train = steps["train_accuracy"].dropna()
    a.metric("Train accuracy (last step)", percent(last_train.iloc[-1] if len(last_train) else None))
    b.metric("Eval accuracy (latest)" if run["status"] in GOING else "Eval accuracy (final)",
             percent(run["final_eval_accuracy"]))
    c.metric("Best eval accuracy", percent(run["best_eval_accuracy"]))
    speed = analysis.tokens_per_second(run, steps)
    if speed is not None:
        d.metric("Tokens per second", f"{speed:.0f}")
    elif AGENTS[run["agent"]].uses_model:
        so_far = 0 if progress is None else progress.tokens_in + progress.tokens_out
        d.metric("Model tokens", f"{so_far:,} in this step" if so_far else "none yet")
    else:
        d.metric("Model tokens", "none (no LLM)")

    if run["config"].get("notes_form") == "rule":
        scored = steps.dropna(subset=["rule_eval_accuracy"])
        if not scored.empty:
            latest = scored.iloc[-1]
            read = latest["model_eval_accuracy"]
            stored = read is not None and read == read  # None or NaN: no model read them
            by_model = (f"**read by the model {percent(read)}** (the paper's protocol)" if stored
                        else "no model reads them (the offline learner)")
            st.caption(f"The notes are a decision list, scored two ways at step {int(latest['step'])}: "
                       f"**run by the engine {percent(latest['rule_eval_accuracy'])}**; {by_model}. The curve is "
                       f"the one this run learns by: applied by {run['config'].get('apply', 'model')}.")

    elsewhere = run["status"] in GOING and run_id not in manager.busy()
    if elsewhere:
        st.caption(f"Run {run_id} goes in process {store.owners.process_of(run_id) or 'unknown'} (a command or "
                   "another dashboard); stop it there, e.g. with Ctrl-C in its terminal.")
    if run["status"] in GOING and not elsewhere:
        left_col, right_col = st.columns(2)
        if left_col.button("Cancel after the step in flight", key=f"cancel_{run_id}"):
            manager.cancel(run_id)
            st.toast(f"Run {run_id} will stop after its current step.")
        study = run.get("study")
        if study and right_col.button(f"Cancel all of {study}", key=f"cancel_study_{run_id}"):
            cancelled = manager.cancel_study(study)
            st.toast(f"Cancelling the {len(cancelled)} run(s) of {study} still going.")

    flags = analysis.alarms(steps, frozenset() if AGENTS[run["agent"]].uses_model else frozenset({run_id}))
    for flag in analysis.standing(flags, steps).itertuples():  # the chart marks those that no longer hold
        show_problem(f"Step {flag.step}, {flag.kind}: {flag.message}", "warning")
    baselines = store.baselines([run_id])
    curve = charts.with_baselines(charts.accuracy_curves(steps), baselines)
    st.plotly_chart(charts.mark_alarms(curve, flags), key="live_curve")
    if not baselines.empty:
        st.caption("The dotted lines, highest first:\n" + "\n".join(
            f"- {line}" for line in analysis.baseline_words(baselines)))
    evaluated = steps.dropna(subset=["eval_accuracy"])
    if not evaluated.empty:
        latest = evaluated.iloc[-1]
        left_col, right_col = st.columns(2)
        left_col.plotly_chart(charts.per_class(analysis.per_class_accuracy(latest["per_class"])), key="live_classes")
        counts = store.confusion(run_id, int(latest["step"]))
        classes = sorted(set(counts["label"]))
        right_col.plotly_chart(charts.confusion(counts, classes), key="live_confusion")

    measure = st.radio("Split by phase", list(charts.PHASE_MEASURES), horizontal=True, key="live_measure",
                       format_func=charts.PHASE_MEASURES.get,
                       help="inference: training answers; evaluation: the held-out answers")
    costs = store.phase_costs([run_id])
    st.plotly_chart(charts.phase_costs(costs, measure), key="live_phases")
    shared = analysis.cached_share(costs)
    if not shared.empty:
        st.caption("Prompt tokens llama.cpp took from its cache, by phase (the calls of a phase share their "
                   "beginning: the task and the notes, or the rule being scored): " + "; ".join(
                       f"{charts.PHASE_LABELS.get(r.phase, r.phase)} {100 * r.cached_share:.0f}% of "
                       f"{int(r.tokens_in):,}" for r in shared.itertuples()))


live()
if REFRESH is None:
    look_for_runs(written_at())
if st.session_state.get("live_run") is not None:  # outside the fragment: a computation must not be re-ticked
    baselines_button(store, [st.session_state["live_run"]], key="live_baselines")
