"""Plotly figures of stored runs, for the dashboard's pages and the study report (iml_core.report):
pure Plotly, no Streamlit. Names in legends and titles come from our own settings, not from model
text, but are escaped anyway by Plotly's own text handling."""

from __future__ import annotations

import math

import pandas as pd
import plotly.colors
import plotly.graph_objects as go

from iml_core import analysis, comparing, formats
from iml_core.agents import PhaseName
from iml_core.baseline_kinds import Baseline
from iml_core.formats import percent

LAYOUT = dict(margin=dict(l=40, r=10, t=40, b=40), height=320, legend=dict(orientation="h", y=-0.25))


# A share's axis: 0 to 100% with ticks every 20 points (an overlaid axis otherwise takes ticks
# such as 0.051, 0.357, 0.663).
SHARE_AXIS = dict(range=[0, 1.02], tick0=0, dtick=0.2, tickformat=".0%")


def step_axis(steps) -> dict:
    """An x-axis of whole steps from step 0: ticks 1, 2, 5, 10, 20, 50... apart, about eight of them
    (Plotly's own choice puts a 3-step run's ticks at 0.5 and 1.5, and an empty chart's axis at -1)."""
    last = max((int(s) for s in steps), default=0) or 1
    spacing = next(n * 10 ** k for k in range(12) for n in (1, 2, 5) if n * 10 ** k >= last / 8)
    return dict(title="step", tick0=0, dtick=spacing, range=[0, last])


def accuracy_curves(steps: pd.DataFrame, title: str = "Accuracy per step") -> go.Figure:
    figure = go.Figure()
    for run_id, run_steps in steps.groupby("run_id"):
        train = run_steps.dropna(subset=["train_accuracy"])
        evaluated = run_steps.dropna(subset=["eval_accuracy"])
        figure.add_scatter(x=train["step"], y=train["train_accuracy"], mode="lines", name=f"run {run_id} train",
                           line=dict(dash="dot"))
        figure.add_scatter(x=evaluated["step"], y=evaluated["eval_accuracy"], mode="lines+markers",
                           name=f"run {run_id} eval")
    figure.update_layout(title=title, xaxis=step_axis(steps["step"]), yaxis=dict(title="accuracy", **SHARE_AXIS),
                         **LAYOUT)
    return figure


GROUP_COLOURS = plotly.colors.qualitative.Plotly  # one a group: its two readers in the same colour


def grouped_curves(curves: pd.DataFrame, by: str) -> go.Figure:
    """comparing.grouped_curves drawn: each group's mean and its spread as a band; a decision list's
    accuracy read by the model dashed beside the same list run by the engine."""
    figure = go.Figure()
    colours = {group: GROUP_COLOURS[i % len(GROUP_COLOURS)] for i, group in enumerate(curves["group"].unique())}
    for (group, reader), rows in curves.groupby(["group", "reader"], sort=False):
        upper, lower = rows["mean"] + rows["std"].fillna(0), rows["mean"] - rows["std"].fillna(0)
        figure.add_scatter(x=list(rows["step"]) + list(rows["step"])[::-1], y=list(upper) + list(lower)[::-1],
                           fill="toself", fillcolor=colours[group], line=dict(width=0), opacity=0.2, showlegend=False,
                           hoverinfo="skip")
        figure.add_scatter(x=rows["step"], y=rows["mean"], mode="lines", name=f"{group}, {reader}" if reader else group,
                           line=dict(color=colours[group], dash="dash" if reader == comparing.MODEL else "solid"))
    figure.update_layout(title=f"Eval accuracy by {by}: mean and spread over runs", xaxis=step_axis(curves["step"]),
                         yaxis=dict(title="eval accuracy", **SHARE_AXIS), **LAYOUT)
    return figure


def heatmap(table: pd.DataFrame, title: str, colorscale: str, scale: tuple[float, float], text: str) -> go.Figure:
    """A momentum x accumulation map on a fixed colour scale (`scale`: the values its ends mean), so
    that the same colour says the same thing on every page and a map of equal cells is one colour;
    `text` formats each cell's value."""
    cells = [["" if pd.isna(v) else text.format(v) for v in row] for row in table.values]
    figure = go.Figure(go.Heatmap(
        z=table.values, x=[str(c) for c in table.columns], y=[str(i) for i in table.index], colorscale=colorscale,
        zmin=scale[0], zmax=scale[1], text=cells, texttemplate="%{text}"))
    figure.update_layout(title=title, xaxis=dict(title="accumulation", type="category"),
                         yaxis=dict(title="momentum", type="category"), **LAYOUT)
    return figure


def settling_maps(maps: dict[str, pd.DataFrame], last_step: int) -> list[go.Figure]:
    """The four maps of iml_core.analysis.heatmaps, each on its fixed scale: final eval accuracy, the
    steps to reach most of it (up to the runs' last step), the spread after that, and instability."""
    return [
        heatmap(maps["final_eval_accuracy"], "Final eval accuracy", "Viridis", (0, 1), "{:.1%}"),
        heatmap(maps["steps_to_reach"], f"Steps to reach {analysis.REACHED_SHARE:.0%} of the final accuracy",
                "Viridis_r", (0, last_step), "{:.0f}"),
        heatmap(maps["spread_after"], "Spread of eval accuracy after reaching it", "Reds", (0, 0.25), "{:.1%}"),
        heatmap(maps["instability"],
                f"Instability: spread of eval accuracy over the last {analysis.INSTABILITY_WINDOW} evals", "Reds",
                (0, 0.25), "{:.1%}"),
    ]


def stability(steps: pd.DataFrame) -> go.Figure:
    """Words changed and notes length per step next to eval accuracy, for one run."""
    figure = go.Figure()
    figure.add_bar(x=steps["step"], y=steps["words_changed"], name="words changed", opacity=0.6)
    figure.add_scatter(x=steps["step"], y=steps["notes_words"], mode="lines", name="notes length (words)")
    evaluated = steps.dropna(subset=["eval_accuracy"])
    figure.add_scatter(x=evaluated["step"], y=evaluated["eval_accuracy"], mode="lines+markers",
                       name="eval accuracy", yaxis="y2")
    figure.update_layout(title="Churn and length of the notes next to accuracy", xaxis=step_axis(steps["step"]),
                         yaxis=dict(title="words"),
                         yaxis2=dict(title="eval accuracy", overlaying="y", side="right", **SHARE_AXIS), **LAYOUT)
    return figure


def confusion(counts: pd.DataFrame, classes: list[str]) -> go.Figure:
    predicted = classes + sorted(set(counts["predicted"]) - set(classes))
    table = counts.pivot_table(index="label", columns="predicted", values="n", aggfunc="sum", fill_value=0)
    table = table.reindex(index=classes, columns=predicted, fill_value=0)
    figure = go.Figure(go.Heatmap(z=table.values, x=predicted, y=classes, colorscale="Blues",
                                  text=table.values, texttemplate="%{text}"))
    figure.update_layout(title="Confusion at the latest eval", xaxis_title="predicted",
                         yaxis=dict(title="true", autorange="reversed"), **{**LAYOUT, "height": 300})
    return figure


def per_class(table: pd.DataFrame) -> go.Figure:
    # Each bar says its value: a class at 0% is a labelled bar, not a gap that looks like no data.
    labels = [percent(a) for a in table["accuracy"]]
    figure = go.Figure(go.Bar(x=table["class"], y=table["accuracy"], text=labels, textposition="outside",
                              cliponaxis=False))
    figure.update_layout(title="Per-class eval accuracy", yaxis=dict(range=[0, 1.1], tickformat=".0%"),
                         **{**LAYOUT, "height": 300})
    return figure


def class_balance(labels: pd.Series) -> go.Figure:
    counts = labels.value_counts().sort_index()
    figure = go.Figure(go.Bar(x=counts.index, y=counts.values))
    figure.update_layout(title=f"Class balance ({len(labels)} samples)", **{**LAYOUT, "height": 300})
    return figure


# How the page names each phase (iml_core.agents.PhaseName), in the order of a step.
PHASE_LABELS = {PhaseName.INFER: "inference", PhaseName.INDUCE: "induction", PhaseName.SCORE: "scoring",
                PhaseName.REVISE: "revision", PhaseName.EVAL: "evaluation"}
PHASE_MEASURES = {"seconds": "seconds", "tokens": "tokens (in + out)", "cost": "cost"}


def phase_costs(costs: pd.DataFrame, measure: str, by: str = "step") -> go.Figure:
    """Stacked bars of a measure per step (one run) or per run, split by phase."""
    frame = costs.assign(tokens=costs["tokens_in"] + costs["tokens_out"])
    table = frame.pivot_table(index=by, columns="phase", values=measure, aggfunc="sum", fill_value=0)
    figure = go.Figure()
    for phase, label in PHASE_LABELS.items():
        if phase in table.columns and table[phase].any():  # a phase the learner never runs is no bar
            figure.add_bar(x=[f"run {i}" for i in table.index] if by == "run_id" else table.index,
                           y=table[phase], name=label)
    figure.update_layout(barmode="stack", title=f"{PHASE_MEASURES[measure].capitalize()} by phase",
                         xaxis=dict(title="run") if by == "run_id" else step_axis(table.index),
                         yaxis_title=PHASE_MEASURES[measure],
                         **LAYOUT)
    return figure


def truth_curves(truth: pd.DataFrame, steps: pd.DataFrame) -> go.Figure:
    """Rule recall, discovery rate and distractors cited per step, next to eval accuracy."""
    figure = go.Figure()
    evaluated = steps.dropna(subset=["eval_accuracy"])
    figure.add_scatter(x=evaluated["step"], y=evaluated["eval_accuracy"], mode="lines+markers", name="eval accuracy")
    figure.add_scatter(x=truth["step"], y=truth["rule_recall"], mode="lines", name="rule recall")
    if "discovery_rate" in truth:
        figure.add_scatter(x=truth["step"], y=truth["discovery_rate"], mode="lines", name="discovery rate",
                           line=dict(dash="dot"))
    figure.add_bar(x=truth["step"], y=truth["distractors"], name="distractors cited", yaxis="y2", opacity=0.35)
    figure.update_layout(title="What the notes know: the rule card's attributes recalled, distractors cited",
                         xaxis=step_axis(truth["step"]), yaxis=dict(title="share", **SHARE_AXIS),
                         yaxis2=dict(title="distractors", overlaying="y", side="right", rangemode="tozero",
                                     dtick=max(1, math.ceil(truth["distractors"].max() / 5)) if len(truth) else 1,
                                     tickformat="d"), **LAYOUT)
    return figure


BASELINE_STYLES = {  # kind -> (label, colour): what frames a learning curve
    Baseline.MAJORITY: ("majority class", "#7f8c8d"),
    Baseline.NO_NOTES: ("no notes (floor)", "#c0392b"),
    Baseline.IN_CONTEXT: ("in-context", "#d68910"),
    Baseline.EQUAL_TOKEN: ("experience in the notes' tokens", "#8e44ad"),
    Baseline.ORACLE: ("oracle notes (ceiling)", "#1e8449"),
}


BASELINE_DASHES = ("dot", "dashdot", "longdashdot", "longdash")  # one a family of runs


def with_baselines(figure: go.Figure, baselines: pd.DataFrame, families: pd.Series | None = None) -> go.Figure:
    """Horizontal lines at the stored baselines (Store.baselines), named in the legend, where two
    at the same height cannot overwrite each other; over several runs, each kind's mean within each
    family of runs (comparing.families: runs of another agent, model or task have baselines of their
    own, never averaged with these), the family named where there are several. A ceiling under its
    floor says what it knows of why."""
    if baselines.empty:
        return figure
    family = (baselines["run_id"].map(families) if families is not None else pd.Series("", index=baselines.index))
    baselines = baselines.assign(family=family.fillna(""))
    named = baselines["family"].nunique() > 1
    dashes = {name: BASELINE_DASHES[i % len(BASELINE_DASHES)] for i, name in enumerate(baselines["family"].unique())}
    for name, of_family in baselines.groupby("family", sort=False):
        means = of_family.groupby("kind")["accuracy"].mean()
        for kind, rows in of_family.groupby("kind"):
            label, colour = BASELINE_STYLES[kind]
            shots = rows["shots"].dropna()
            if kind in (Baseline.IN_CONTEXT, Baseline.EQUAL_TOKEN) and len(shots):
                label += f" ({formats.counted(int(shots.iloc[0]), 'example')})"
            if len(rows) > 1:
                label += f", mean of {len(rows)} runs"
            accuracy = float(rows["accuracy"].mean())
            label = f"{label}: {percent(accuracy)}" + (f" ({name})" if named else "")
            if kind == Baseline.ORACLE and Baseline.NO_NOTES in means and accuracy < means[Baseline.NO_NOTES]:
                invalid, answered = int(rows["invalid"].sum()), int(rows["eval_size"].sum())
                label += (f", under the floor: {invalid} of {answered} answers named no class" if invalid else
                          ", under the floor: the model did not use the true rules it was given")
            line = dict(color=colour, dash=dashes[name], width=1.5)
            figure.add_hline(y=accuracy, line=line)
            figure.add_scatter(x=[None], y=[None], mode="lines", line=line, name=label)  # its legend entry
    return figure


def mark_alarms(figure: go.Figure, flags: pd.DataFrame) -> go.Figure:
    """Vertical marks at the flagged steps of an accuracy chart."""
    for row in flags.itertuples():
        figure.add_vline(x=row.step, line=dict(color="#c0392b", dash="dash", width=1))
    if not flags.empty:
        figure.add_scatter(x=flags["step"], y=[1.0] * len(flags), mode="markers", name="alarm",
                           marker=dict(symbol="triangle-down", size=11, color="#c0392b"),
                           text=flags["kind"] + ": " + flags["message"], hoverinfo="text")
    return figure


LEARNED_COLOURS = ("#1f4e79", "#117a65", "#a04000", "#6c3483")  # one learned line per learner


def ladder(table: pd.DataFrame) -> go.Figure:
    """A ladder study (iml_core.ladder_results.ladder_table): each baseline and the learned accuracy per
    rung (one line per learner, with its equal-token baseline), the learned spread over seeds as error
    bars, and the rungs where the model stops applying a given rule (grey) or no learner learns one
    (red) shaded."""
    figure = go.Figure()
    several = table["learner"].nunique() > 1
    shared = table.drop_duplicates("rung")  # every learner of a rung shares its floor, in-context and oracle
    rungs = [f"{row.rung}. {row.task}" for row in shared.itertuples()]
    for kind in (kind for kind in Baseline if not kind.of_the_run):
        label, colour = BASELINE_STYLES[kind]
        figure.add_scatter(x=rungs, y=shared[kind], name=label, mode="lines+markers",
                           line=dict(color=colour, dash="dot", width=1.5))
    for number, (learner, rows) in enumerate(table.groupby("learner", sort=False)):
        x = [f"{row.rung}. {row.task}" for row in rows.itertuples()]
        suffix = f" ({learner})" if several else ""
        label, colour = BASELINE_STYLES[Baseline.EQUAL_TOKEN]
        if rows[Baseline.EQUAL_TOKEN].notna().any():
            figure.add_scatter(x=x, y=rows[Baseline.EQUAL_TOKEN], name=label + suffix, mode="lines+markers",
                               line=dict(color=colour, dash="dot", width=1.5))
        colour = LEARNED_COLOURS[number % len(LEARNED_COLOURS)]
        figure.add_scatter(x=x, y=rows["learned"], name="learned (final eval)" + suffix, mode="lines+markers",
                           line=dict(color=colour, width=3),
                           error_y=dict(type="data", array=rows["learned spread"].fillna(0), visible=True))
        read = rows["learned, read by the model"]
        if read.notna().any() and not rows["learned, run by the engine"].equals(read):
            # the same decision list read by the model: the paper's protocol, beside the engine's
            figure.add_scatter(x=x, y=read, name="learned, read by the model" + suffix, mode="lines+markers",
                               line=dict(color=colour, width=2, dash="dash"))
    # A rung is shaded red when no learner learns there.
    learns = {rung: None if rows["learns"].isna().all() else bool(rows["learns"].fillna(False).astype(bool).any())
              for rung, rows in table.groupby("rung")}
    for position, row in enumerate(shared.itertuples()):
        if row.applies is False or learns[row.rung] is False:
            figure.add_vrect(x0=position - 0.5, x1=position + 0.5, line_width=0, opacity=0.12,
                             fillcolor="#7f8c8d" if row.applies is False else "#c0392b")
    figure.update_layout(title="Accuracy up the ladder (mean over seeds)", yaxis=SHARE_AXIS,
                         xaxis_title="rung", legend=dict(orientation="h", y=-0.3))
    return figure
