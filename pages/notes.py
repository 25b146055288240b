import pandas as pd
import streamlit as st

from iml_core.config import RunConfig
from iml_core.runner import build_task
from studio import charts, render
from studio.ui import current, pick_run

store, _ = current()
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

if after > 0:
    st.subheader(f"What caused the revision at step {after}")
    if before != after - 1:
        st.caption(f"The diff spans steps {before}–{after}; below is only the last revision's evidence.")
    for k, text in enumerate(store.batch_notes(run_id, after), start=1):
        st.markdown(f"**Batch note {k}**")
        st.html(render.escaped_block(text))
    run = store.run(run_id)
    texts = {s.id: s.text for s in build_task(RunConfig.from_dict(run["config"])).samples}
    trajectories = pd.DataFrame([
        {"minibatch": p["minibatch"] + 1, "observation": texts.get(p["sample_id"], f"sample {p['sample_id']}"),
         "answer": p["predicted"] if p["predicted"] is not None else f"(invalid) {p['raw']}",
         "right class": p["label"], "correct": p["correct"]}
        for p in store.predictions(run_id, after) if p["phase"] == "train"])
    st.markdown("**Trajectories** (observation, answer, feedback)")
    st.dataframe(trajectories, hide_index=True, key="trajectories")

st.plotly_chart(charts.stability(steps), key="notes_stability")
