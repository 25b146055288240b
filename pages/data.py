import pandas as pd
import streamlit as st

from iml_core.errors import IMLError
from iml_core.tasks import (PRESETS, csv_columns, formula_like_cells, generate_benchmark, parse_csv_task, save_task,
                            saved_tasks)
from studio import charts, render
from studio.engine import tasks_dir
from studio.ui import show_problem, table

st.title("Data")
preset_tab, upload_tab = st.tabs(["Benchmark presets", "Your CSV"])

with preset_tab:
    name = st.selectbox("Preset", list(PRESETS), key="data_preset")
    task = generate_benchmark(name)
    st.write(PRESETS[name].description)
    card = task.rule_card
    left, right = st.columns(2)
    with left:
        st.markdown(f"**Rule card**: the class depends on {', '.join(card['relevant'])} only.")
        table(pd.DataFrame([{**row["when"], "class": row["class"]} for row in card["table"]]), key="rule_table")
    with right:
        st.plotly_chart(charts.class_balance(pd.Series([s.label for s in task.samples])), key="balance")
    table(pd.DataFrame([{"id": s.id, "sentence": s.text, "label": s.label} for s in task.samples[:50]]),
          key="preset_samples")

with upload_tab:
    st.caption("One column holds the class; the others are attributes. An `id` column names samples, a "
               "`text` column, if there is one, is the sentence the agent reads.")
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
