import io

import pandas as pd

from iml_core import export
from iml_core.config import RunConfig
from iml_core.runner import create_run, execute_run


def test_csv_export_neutralizes_spreadsheet_formulas():
    frame = pd.DataFrame({"notes": ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "plain"], "n": [1, 2, 3, 4, 5]})
    text = export.to_csv(frame).decode()
    assert "'=HYPERLINK" in text and "'+1" in text and "'-2" in text and "'@SUM" in text
    assert "\nplain," in text and ",5" in text


def test_steps_round_trip_through_parquet_and_notes_history_is_markdown(store):
    run_id = create_run(store, RunConfig(steps=3, eval_size=20, initial_notes="a ``` fence"))
    execute_run(store, run_id)
    steps = store.steps_frame([run_id], notes=True)
    back = pd.read_parquet(io.BytesIO(export.to_parquet(steps)))
    assert back["notes"].tolist() == [s["notes"] for s in store.steps(run_id)]
    markdown = export.notes_markdown(store, run_id)
    assert markdown.count("## Step ") == 4
    assert "````\na ``` fence" in markdown  # the fence outlasts the backticks inside the notes
