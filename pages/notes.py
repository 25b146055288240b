import pandas as pd
import streamlit as st

from iml_core import analysis, charts, evaluation, render
from iml_core.attribution import note_units
from iml_core.config import RunConfig
from iml_core.errors import IMLError
from iml_core.builders import build_task, check_run
from iml_core.prompts import PROMPT_LAYOUTS
from iml_core.registry import AGENTS
from iml_core.runner import fork_config
from iml_core.truth import TruthScorer
from iml_core.formats import percent
from studio.ui import SELECTED, current, model_settings, pick_run, show_problem, table, task_choices
from studio.widgets import setting_input

store, manager = current()
st.title("Notes")
st.caption("What the agent wrote, step by step: green words were added, red ones removed; "
           "blue marks the beginning momentum made a revision keep.")

runs = store.runs_frame()
run_id = pick_run(runs[runs["steps_done"] > 0] if not runs.empty else runs, key="notes_run")
if run_id is None:
    st.info("No run has finished a step yet. Start one on the New run page.")
    st.stop()

steps = store.steps_frame([run_id])
numbers = steps["step"].tolist()
left, right = st.columns(2)
before = left.selectbox("From step", numbers, index=max(0, len(numbers) - 2), key=f"notes_from_{run_id}")
after = right.selectbox("To step", numbers, index=len(numbers) - 1, key=f"notes_to_{run_id}")
old, new = store.notes_at(run_id, before), store.notes_at(run_id, after)
row = steps[steps["step"] == after].iloc[0]
run = store.run(run_id)
if not AGENTS[run["agent"]].uses_model:
    st.caption("The rule learner writes one line per class: its typical traits, each with the share of the class's "
               "recent examples that had it (90% is 9 in 10). Under momentum it keeps the old lines and adds "
               "corrections; a later line about a class overrides the traits it names.")

inline, side, kept = st.tabs(["Inline diff", "Side by side", f"Notes at step {after}"])
with inline:
    st.html(render.inline_diff(old, new))
with side:
    a, b = st.columns(2)
    old_html, new_html = render.side_by_side(old, new)
    a.markdown(f"**Step {before}**")
    a.html(old_html)
    b.markdown(f"**Step {after}**")
    b.html(new_html)
with kept:
    if row["prefix_words"]:
        by_itself = "kept it by itself" if row["prefix_kept_by_model"] else "dropped it; the engine put it back"
        st.caption(f"Momentum required the first {int(row['prefix_words'])} words of step {after - 1}'s notes; "
                   f"the agent {by_itself}.")
    st.html(render.notes_with_kept_prefix(new, int(row["prefix_words"] or 0)))
    if row["words_truncated"]:
        st.caption(f"{int(row['words_truncated'])} words over the cap were cut.")

task = build_task(RunConfig.from_dict(run["config"]))
flags = analysis.alarms(steps, frozenset() if AGENTS[run["agent"]].uses_model else frozenset({run_id}))
for flag in flags[flags["step"] == after].itertuples():
    show_problem(f"Step {flag.step}, {flag.kind}: {flag.message}", "warning")

# One tab per question keeps the page one screen long, however long the run.
helped, knows, caused, stability, elsewhere = st.tabs([
    "Which sentences helped", "What the notes know", f"What caused step {after}", "Stability",
    "Score elsewhere or fork"])
with helped:
    usage = store.sentence_usage(run_id, after)
    st.caption("Each sentence shaded by the answers that relied on it (the eval at this step and the next step's "
               "training answers): green when they were right, red when wrong, stronger with more use.")
    st.html(render.sentence_heatmap(note_units(new), {int(r.note_sentence): (int(r.right), int(r.wrong))
                                                      for r in usage.itertuples()}))
    run_settings = evaluation.run_config(store.run(run_id))
    if usage.empty and run_settings.uses_model and not PROMPT_LAYOUTS[run_settings.prompt_layout].names_line:
        st.caption(f"No answer names a sentence: the {run_settings.prompt_layout} layout asks the model for the "
                   "class alone (a small model answers better so), so every sentence shows as not used. The "
                   "ablation below says which sentences carry the accuracy.")
    ablation = store.ablation(run_id, after)
    st.caption("Citing is not carrying: the last column scores the notes again without each sentence (an "
               "ablation). A sentence whose removal costs accuracy carries it, whatever the answers say they "
               "relied on.")
    table(analysis.sentence_table(note_units(new), usage, ablation), key="notes_sentences",
          percent=("right when cited",), points=("accuracy change without it",))
    calls = evaluation.ablation_calls(run_settings, new)
    if note_units(new) and st.button(f"Score the notes at step {after} without each sentence"
                                     + (f" (at most {calls} model calls)" if calls else ""), key="notes_ablate"):
        with st.spinner("Scoring the notes without each sentence..."):
            try:
                evaluation.ablate_run(store, run_id, after)
            except IMLError as e:
                show_problem(str(e))
            else:
                st.rerun()

with knows:
    if task.rule_card:
        scorer = TruthScorer(task)
        score = scorer.score(new)
        # A CSV's rule card names its own columns: quoted literally, never read as markdown.
        st.html(render.caption(f"Against the rule card of {task.name}: the class depends on "
                               f"{', '.join(scorer.relevant)}. At step {after} the notes recall "
                               f"{100 * score.rule_recall:.0f}% of the rule and cite {score.distractors} distractor "
                               "attribute(s)."))
        table(pd.DataFrame([{
            "class": v.name, "verdict": v.verdict, "recalled": ", ".join(v.recalled),
            "missing": ", ".join(v.missing), "wrong value": ", ".join(v.wrong),
            "distractors cited": ", ".join(v.distractors)} for v in score.classes]), key="truth_table")
        st.plotly_chart(charts.truth_curves(analysis.truth_curve(scorer, store.steps(run_id)), steps),
                        key="truth_curve")
    else:
        st.html(render.caption(f"This task has no rule card (a CSV without a {task.name}.rules.json beside it), "
                               "so the notes cannot be scored against the truth."))

with caused:
    if after > 0:
        if before != after - 1:
            st.caption(f"The diff spans steps {before}–{after}; below is only the last revision's evidence.")
        weighed = store.candidates(run_id, after)
        if weighed:
            st.markdown(f"**What the {run['config'].get('learner', 'iml')} learner weighed**: each candidate, "
                        "its score by application, and why it won or lost")
            st.html(render.candidates(weighed))
        for k, text in enumerate(store.batch_notes(run_id, after), start=1):
            st.markdown(f"**Batch note {k}**")
            st.html(render.escaped_block(text))
        st.markdown("**Trajectories** (observation, answer, feedback)")
        # Wide: an observation names every attribute, the deciding one perhaps last.
        table(analysis.trajectories(task, store.predictions(run_id, after)), key="trajectories",
              column_config={"observation": st.column_config.TextColumn("observation", width="large")})
    else:
        st.caption("Step 0 holds the notes the run started with: no revision made them.")

with stability:
    st.plotly_chart(charts.mark_alarms(charts.stability(steps), flags), key="notes_stability")
with elsewhere:
    with st.expander(f"Score these notes (step {after}) with another agent, model or task"):
        a, b = st.columns(2)
        scorer_agent = setting_input(a, "agent", run_settings.agent, key="score_agent")
        tasks = task_choices()
        scorer_task = b.selectbox("Task", list(tasks), format_func=tasks.get, key="score_task")
        scorer = run_settings.replace(task=scorer_task, agent=scorer_agent, label_noise=None,
                                      **(model_settings() if AGENTS[scorer_agent].uses_model else {}))
        problems = check_run(scorer)
        for problem in problems:
            show_problem(problem)
        if st.button("Score", disabled=bool(problems), key="score_notes"):
            with st.spinner("Scoring..."):
                try:
                    evaluation_id, scored = evaluation.score_and_store(store, scorer, new, run_id=run_id, step=after)
                except IMLError as e:
                    show_problem(str(e))
                else:
                    st.success(f"Evaluation {evaluation_id}: {percent(scored.accuracy)} on {scored.eval_size} samples "
                               f"of {scorer_task} read by {scored.agent_description} ({scored.invalid} invalid); "
                               f"this run's own eval at step {after}: {percent(row['eval_accuracy'])}.")

    with st.expander(f"Fork: a new run that starts from these notes (step {after})"):
        old_config = RunConfig.from_dict(store.run(run_id)["config"])
        a, b, c = st.columns(3)
        changes = {name: setting_input(column, name, getattr(old_config, name), key=f"fork_{name}",
                                       slider=name != "steps")
                   for column, name in zip((a, b, c), ("momentum", "accumulation", "steps"), strict=True)}
        fork = fork_config(store, run_id, after, **changes)
        problems = check_run(fork)
        for problem in problems:
            show_problem(problem)
        st.caption("Everything else as in run {}; the new run records it as its parent.".format(run_id))
        if st.button("Start the fork", disabled=bool(problems), key="fork_start"):
            try:
                (fork_id,) = manager.submit([fork], parent=(run_id, after))
            except IMLError as e:
                show_problem(str(e))
            else:
                st.session_state[SELECTED] = [fork_id]
                st.success(f"Run {fork_id} started from run {run_id}'s notes at step {after}.")
                st.page_link("pages/live.py", label="Watch it on the Live page")

