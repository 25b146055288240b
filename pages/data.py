import pandas as pd
import streamlit as st

from iml_core.errors import IMLError
from iml_core.tasks import (PRESETS, RULE_KNOBS, Task, csv_columns, formula_like_cells, generate_benchmark,
                            generate_rules_task, parse_csv_task, rules_spec, save_task, saved_tasks)
from iml_core import charts, render
from studio.engine import tasks_dir
from studio.ui import keep_generated_task, show_problem, table
from studio.widgets import keep

st.title("Data")
preset_tab, generated_tab, upload_tab = st.tabs(["Benchmark presets", "Generated tasks", "Your CSV"])


def show_task(task: Task, key: str) -> None:
    """A task's rule card (its rule in sentences, when it has them, and its table), its class
    balance and its first samples."""
    card = task.rule_card
    left, right = st.columns(2)
    with left:
        st.markdown(f"**Rule card**: the class depends on {', '.join(card['relevant'])} only.")
        for sentence in card.get("rules", [])[:20]:
            st.html(render.escaped_block(sentence))
        table(pd.DataFrame([{**row["when"], "class": row["class"]} for row in card["table"]]), key=f"{key}_rules")
    with right:
        st.plotly_chart(charts.class_balance(pd.Series([s.label for s in task.samples])), key=f"{key}_balance")
    table(pd.DataFrame([{"sample": s.id, "sentence": s.text, "label": s.label} for s in task.samples[:50]]),
          key=f"{key}_samples")


with preset_tab:
    name = st.selectbox("Preset", list(PRESETS), key="data_preset")
    st.write(PRESETS[name].description)
    if PRESETS[name].base:
        st.caption(f"Same rule and samples as {PRESETS[name].base}; only the replaced labels differ.")
    show_task(generate_benchmark(name), "preset")

with generated_tab:
    st.caption("A task drawn from a rule with knobs; the same knobs give the same task, byte for byte. Its name "
               "is its spec, which also works as `--task` on the command line.")
    knobs, columns = {}, st.columns(3)
    for position, knob in enumerate(RULE_KNOBS.values()):
        column = columns[position % len(columns)]
        if knob.choices:
            knobs[knob.name] = column.selectbox(knob.name.capitalize(), knob.choices, key=f"knob_{knob.name}",
                                                help=knob.help)
        elif isinstance(knob.default, int):
            knobs[knob.name] = column.number_input(knob.name.capitalize(), int(knob.low), int(knob.high),
                                                   knob.default, key=f"knob_{knob.name}", help=knob.help)
        else:
            # Rounded: steps of 0.05 add up to 0.15000000000000002, which would be another task's name.
            knobs[knob.name] = round(column.number_input(knob.name.capitalize(), knob.low, knob.high, knob.default,
                                                         step=0.05, key=f"knob_{knob.name}", help=knob.help), 4)
    try:
        generated = generate_rules_task(rules_spec(knobs))
    except IMLError as e:
        show_problem(str(e))
    else:
        st.code(generated.name, language=None)
        st.write(generated.rule_card["description"])
        if st.button("Use on New run", key="use_generated",
                     help="adds this task to New run's task list (for every tab) and picks it there"):
            keep_generated_task(generated.name)
            st.session_state.pop("task", None)  # New run's task box, if this session still holds it,
            keep("task", generated.name)  # starts at this task on the next visit
            st.success("Added; it is picked on the New run page.")
        show_task(generated, "generated")

with upload_tab:
    st.caption("One column holds the class; the others are attributes. An `id` column names samples, a "
               "`text` column, if there is one, is the sentence the agent reads. A saved task may get a rule card "
               "(truth scoring, the oracle): NAME.rules.json beside NAME.csv, as data/paper.rules.json is.")
    upload = st.file_uploader("CSV file", type=["csv"], key="csv_upload")
    if upload is not None:
        data = upload.getvalue()
        columns = csv_columns(data, upload.name) or ["label"]
        label_column = st.selectbox("Label column", columns,
                                    index=columns.index("label") if "label" in columns else len(columns) - 1,
                                    key="csv_label")
        try:
            parsed = parse_csv_task(data, upload.name, label_column)
        except IMLError as e:
            show_problem(f"{e}. Nothing was saved.")
        else:
            st.success(f"{len(parsed.samples)} samples, {len(parsed.classes)} classes, "
                       f"{len(parsed.attributes)} attributes.")
            formulas = formula_like_cells(parsed)
            if formulas:
                shown = "; ".join(f"sample {i}, {column}: {cell}" for i, column, cell in formulas[:3])
                show_problem(f"{len(formulas)} cell(s) look like spreadsheet formulas ({shown}). They stay plain "
                             "text here and the agent reads them as words; exports start them with ' so that a "
                             "spreadsheet does not run them. Fix the file if they were not meant as data.",
                             "warning")
            st.markdown("**How the agent will read the first rows**")
            for sample in parsed.samples[:5]:
                st.html(render.escaped_block(f"{sample.text}  →  {sample.label}"))
            name = st.text_input("Save as task", value=parsed.name, key="csv_name",
                                 help="letters, digits, - and _; it then appears on the New run page")
            if st.button("Save task", key="csv_save"):
                try:
                    path = save_task(parsed, name, tasks_dir())
                except IMLError as e:
                    show_problem(str(e))
                else:
                    st.success(f"Saved as {path.name}; pick it on the New run page.")
    saved = saved_tasks(tasks_dir())
    if saved:
        st.caption("Saved tasks: " + ", ".join(p.stem for p in saved))
