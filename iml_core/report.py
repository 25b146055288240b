"""A study report: one HTML file of some runs (a study, a sweep or a chosen set) that opens anywhere,
offline, and can be sent to someone without the dashboard: the settings that differ, the curves with
their baselines, final accuracy over seeds, the Paper view's figures, the settling maps, the ladder,
the alarms, cost by phase and the best run's notes.

The file holds everything it shows: plotly.js once, inline, then each figure's data; CSS inline; no
URL of a script, font, style sheet or image, and a Content-Security-Policy that forbids fetching any.
Every text a model, a file or a user wrote goes through html.escape (iml_core.render for the notes)."""

from __future__ import annotations

import datetime as dt
import html
import numbers

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from iml_core import __version__, analysis, charts, comparing, ladder_results, render
from iml_core.backends import without_credentials
from iml_core.config import SETTINGS, RunConfig
from iml_core.errors import UserError
from iml_core.formats import percent, points
from iml_core.registry import AGENTS
from iml_core.store import Store
from iml_core.studies import LADDER, PAPER_ACCUMULATIONS, PAPER_MOMENTA, rung_of

# Settings that tell repeats apart rather than conditions: curves and tables average over them.
REPEATS = ("seed",)
# A shared setting's value longer than this (initial notes, a CSV path) is cut in the settings list;
# the best run's notes show in full further down.
LONGEST_VALUE = 80
MOST_ALARMS = 200  # rows of the alarms table; the rest are counted
# A browser fetches nothing for this page: inline scripts and styles, images only from data: and
# blob: (Plotly draws a heat map as an image of its own making).
POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
          "font-src 'none'; connect-src 'none'")
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

STYLE = """<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2933; margin: 0;
       background: #fafbfc; }
main { max-width: 1300px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
header { border-bottom: 1px solid #d9dee3; margin-bottom: 1rem; }
h1 { font-size: 1.7rem; margin: 0 0 0.4rem; overflow-wrap: anywhere; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 0.6rem; border-bottom: 1px solid #e3e6ea; padding-bottom: 0.3rem; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 0.4rem; }
.meta { color: #52606d; font-size: 0.9rem; margin: 0.2rem 0; overflow-wrap: anywhere; }
nav a { margin-right: 0.9rem; font-size: 0.9rem; color: #2f5f8a; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.4rem 0 0.8rem; background: white; }
th, td { border: 1px solid #e3e6ea; padding: 0.25rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f0f3f6; font-weight: 600; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.figure { background: white; border: 1px solid #e3e6ea; border-radius: 6px; margin: 0.5rem 0; padding: 0.3rem; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 0.8rem; }
.shared { font-size: 0.85rem; color: #3e4c59; line-height: 1.7; }
.shared span { display: inline-block; margin-right: 1rem; }
.shared b { font-weight: 600; }
.note { color: #52606d; font-size: 0.9rem; }
</style>"""


def runs_of_study(store: Store, study: str) -> list[int]:
    """The ids of a study's runs; a name no run carries is refused with the names there are."""
    runs = store.runs_frame()
    ids = sorted(int(i) for i in runs.loc[runs["study"] == study, "id"])
    if not ids:
        known = store.studies()
        there = f"the studies are: {', '.join(known)}" if known else "it holds no study yet (a sweep makes one)"
        raise UserError(f"there is no study {study!r} in {store.path}; {there}")
    return ids


def report_title(store: Store, run_ids) -> str:
    """The study's name when the runs are all of one study's runs, else their ids."""
    ids = sorted({int(i) for i in run_ids})
    runs = store.runs_frame()
    studies = set(runs.loc[runs["id"].isin(ids), "study"].dropna())
    if len(studies) == 1 and sorted(runs.loc[runs["study"] == next(iter(studies)), "id"]) == ids:
        return next(iter(studies))
    return f"Runs {', '.join(map(str, ids))}" if len(ids) <= 12 else f"{len(ids)} runs, from run {ids[0]} to {ids[-1]}"


def report_html(store: Store, run_ids, title: str) -> str:
    """The report of some runs as one HTML document (see the module's docstring)."""
    wanted = sorted({int(i) for i in run_ids})
    if not wanted:
        raise UserError("a report needs at least one run; name runs or a study (`python -m iml_core runs` lists them)")
    everything = store.runs_frame()
    missing = sorted(set(wanted) - set(everything["id"]))
    if missing:
        raise UserError(f"there is no run {', '.join(map(str, missing))} in {store.path}; "
                        "`python -m iml_core runs` lists the runs")
    runs = everything[everything["id"].isin(wanted)].sort_values("id", ignore_index=True)
    # As RunConfig reads them: a run stored before a setting existed ran with its default, and must
    # not differ from a newer run by that setting's absence.
    # A report is made to be sent: a server address goes without any user, password or query in it.
    configs = {int(i): (config := RunConfig.from_dict(store.run(int(i))["config"])).replace(
        base_url=without_credentials(config.base_url)).to_dict() for i in runs["id"]}
    report = _Report(store, runs, configs)
    return report.document(title)


def _value_text(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _short(text: str) -> str:
    return text if len(text) <= LONGEST_VALUE else f"{text[:LONGEST_VALUE]}… ({len(text)} characters)"


def _table(frame: pd.DataFrame, formats: dict | None = None) -> str:
    """A frame as an HTML table, every header and cell escaped; `formats` maps a column to how its
    values read (a number column right-aligned)."""
    formats = formats or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, values, strict=True):
            text = formats[column](value) if column in formats else _value_text(value)
            number = column in formats or isinstance(value, numbers.Number) and not isinstance(value, (bool, np.bool_))
            cells.append(f'<td class="number">{html.escape(text)}</td>' if number else f"<td>{html.escape(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


class _Report:
    """The sections of one report, each read once from the store."""

    def __init__(self, store: Store, runs: pd.DataFrame, configs: dict[int, dict]):
        self.store, self.runs, self.configs = store, runs, configs
        self.ids = [int(i) for i in runs["id"]]
        self.steps = store.steps_frame(self.ids)
        self.baselines = store.baselines(self.ids)
        self.figures = 0
        # An agent no longer registered is taken to call a model: its alarms then give a model's advice.
        uses_model = {int(i): AGENTS[agent].uses_model if agent in AGENTS else True
                      for i, agent in zip(runs["id"], runs["agent"], strict=True)}
        self.learners = frozenset(i for i, model in uses_model.items() if not model)
        names = list(dict.fromkeys([*SETTINGS, *(n for c in configs.values() for n in c)]))
        values = {name: [_value_text(c.get(name)) for c in configs.values()] for name in names}
        self.differing = [n for n in names if len(set(values[n])) > 1]
        # What sets a run's condition apart; a group of runs differing only in these is one condition.
        self.conditions = [n for n in self.differing if n not in REPEATS]
        # Each condition's value per run. On the ladder each seed draws its own rule, so its task
        # differs by seed: its rung is the condition, and the seeds are repeats of it.
        self.condition_values = {n: {i: c.get(n) for i, c in configs.items()} for n in self.conditions}
        rungs = {i: rung_of(c.get("task", "")) for i, c in configs.items()}
        if "task" in self.conditions and all(rungs.values()):
            self.condition_values = {("rung" if n == "task" else n): ({
                i: f"{LADDER.index(rung) + 1}. {rung.name}" for i, rung in rungs.items()} if n == "task" else values)
                for n, values in self.condition_values.items()}
            self.conditions = list(self.condition_values)
        # Model settings say nothing of runs that call no model, and an empty one was never set.
        any_model = any(uses_model.values())
        self.shared = {n: values[n][0] for n in names if n not in self.differing and values[n][0]
                       and (any_model or n not in SETTINGS or SETTINGS[n].part != "model")}
        self.condition = ", ".join(self.conditions)

    def figure(self, figure: go.Figure, height: int | None = None) -> str:
        """A figure's div and the script that draws it with the plotly.js inlined once in the head."""
        self.figures += 1
        if height:  # a legend of baselines needs more room than the dashboard's columns give it
            figure.update_layout(height=height)
        height = figure.layout.height or 450
        body = figure.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False, config=PLOTLY_CONFIG,
                              default_height=f"{height}px")
        return f'<div class="figure">{body}</div>'

    def document(self, title: str) -> str:
        sections = [("settings", "Settings", self.settings()), ("accuracy", "Accuracy", self.accuracy()),
                    ("final", "Final accuracy", self.final())]
        for anchor, heading, body in (("paper", "The paper's figures", self.paper()),
                                      ("maps", "Momentum x accumulation", self.maps()),
                                      ("ladder", "Ladder", self.ladder())):
            if body:
                sections.append((anchor, heading, body))
        sections += [("alarms", "Alarms", self.alarms()), ("cost", "Cost by phase", self.cost()),
                     ("notes", "Notes of the best run", self.notes())]
        contents = "".join(f'<a href="#{a}">{html.escape(h)}</a>' for a, h, _ in sections)
        body = "".join(f'<section id="{a}"><h2>{html.escape(h)}</h2>{b}</section>' for a, h, b in sections)
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<meta name="generator" content="IML Studio {html.escape(__version__)}">'
                f'<meta name="iml-figures" content="{self.figures}">'
                f"<title>{html.escape(title)}</title>{STYLE}{render.STYLE}"
                f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
                f"<body><main>{self.header(title)}<nav>{contents}</nav>{body}</main></body></html>\n")

    def header(self, title: str) -> str:
        studies = sorted({s for s in self.runs["study"].dropna()})
        created = pd.to_datetime(self.runs["created_at"]).dropna()
        finished = pd.to_datetime(self.runs["finished_at"]).dropna()
        span = f"{created.min():%Y-%m-%d %H:%M}" if len(created) else "not started"
        if len(finished):
            span += f" to {finished.max():%Y-%m-%d %H:%M}"
        lines = [f"{len(self.ids)} run{'s' if len(self.ids) != 1 else ''}: {', '.join(map(str, self.ids))}"
                 + (f" · study {', '.join(studies)}" if studies else ""),
                 f"Runs created {span} · report made {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by IML Studio "
                 f"{__version__}",
                 f"Database: {self.store.path.resolve()}"]
        return (f"<header><h1>{html.escape(title)}</h1>"
                + "".join(f'<p class="meta">{html.escape(line)}</p>' for line in lines) + "</header>")

    def settings(self) -> str:
        shown = self.runs.assign(
            # Descriptions stored before they dropped credentials may name a server with them.
            agent=self.runs["agent_description"].str.replace(r"(\w+://)[^/\s@]+@", r"\1", regex=True),
            steps=[f"{d}/{t}" for d, t in zip(self.runs["steps_done"], self.runs["steps_total"], strict=True)])
        for name in self.differing:
            shown[name] = [_short(_value_text(self.configs[int(i)].get(name))) for i in shown["id"]]
        # A decision list's last evaluation both ways, named so that nobody takes one for the other.
        both = {"final_rule_applied_accuracy": "final, run by the engine",
                "final_model_applied_accuracy": "final, read by the model"}
        both = {column: name for column, name in both.items() if shown[column].notna().any()}
        columns = ["id", "status", *self.differing, *(["agent"] if "agent" not in self.differing else []), "steps",
                   "final_eval_accuracy", "best_eval_accuracy", *both]
        table = shown[columns].rename(columns={"id": "run", "final_eval_accuracy": "final eval",
                                               "best_eval_accuracy": "best eval", **both})
        said = (f"<p>What differs between the runs: <b>{html.escape(', '.join(self.differing))}</b>.</p>"
                if self.differing else "<p>The runs share every setting.</p>" if len(self.ids) > 1 else "")
        shared = "".join(f"<span><b>{html.escape(name)}</b> {html.escape(_short(value))}</span>"
                         for name, value in self.shared.items())
        shares = {"final eval": percent, "best eval": percent} | dict.fromkeys(both.values(), percent)
        return (said + _table(table, shares)
                + f'<h3>Shared by every run</h3><p class="shared">{shared}</p>')

    def accuracy(self) -> str:
        if self.steps.empty:
            return '<p class="note">No run has a step yet.</p>'
        if self.conditions:
            # A column of its own: a setting's column of the same name keeps its numbers for the maps.
            runs = self.runs.assign(condition=[", ".join(_value_text(self.condition_values[n][int(i)])
                                                         for n in self.conditions) for i in self.runs["id"]])
            curves = charts.grouped_curves(comparing.grouped_curves(runs, self.steps, "condition", self.condition),
                                           self.condition)
        else:
            curves = charts.accuracy_curves(self.steps, "Accuracy per step")
        said = ('<p class="note">No baselines are stored for these runs: <code>python -m iml_core baseline RUN</code> '
                "or Compare's button computes them.</p>" if self.baselines.empty else
                '<p class="note">Dotted lines: the baselines (the mean over runs of each kind): no notes (the floor), '
                "in-context examples, the oracle's notes (the ceiling), the majority class, and each run's own "
                "experience in as many prompt tokens as its notes (equal-token).</p>")
        return self.figure(charts.with_baselines(curves, self.baselines), height=440) + said

    def final(self) -> str:
        # Each condition's own values (not their text), so that groups sort as numbers.
        runs = pd.DataFrame({name: [self.condition_values[name][int(i)] for i in self.runs["id"]]
                             for name in self.conditions} | {
            "final_eval_accuracy": self.runs["final_eval_accuracy"].to_numpy()})
        if not self.conditions:
            runs["runs"] = "all"
        table = analysis.final_accuracy_by(runs, self.conditions or ["runs"]).rename(columns={
            "mean": "final eval accuracy (mean)", "std": "spread over seeds (std)", "count": "runs evaluated"})
        return _table(table, {"final eval accuracy (mean)": percent, "spread over seeds (std)": points})

    def paper(self) -> str:
        """The Paper view's two figures, for runs that hold both of the paper's experiments."""
        cells = set(zip(self.runs["momentum"], self.runs["accumulation"], strict=True))
        wanted = {(m, 1) for m in PAPER_MOMENTA} | {(0.0, k) for k in PAPER_ACCUMULATIONS}
        if not wanted <= cells or not set(self.conditions) <= {"momentum", "accumulation"}:
            return ""
        by_momentum, by_accumulation = analysis.paper_curves(self.runs, self.steps)
        figures = [self.figure(charts.with_baselines(charts.grouped_curves(curves, by), self.baselines), height=460)
                   for curves, by in ((by_momentum, "momentum"), (by_accumulation, "accumulation"))]
        return (f'<p class="note">Eval accuracy by momentum (runs with accumulation 1) and by accumulation (runs '
                f'without momentum), mean and spread over seeds.</p><div class="pair">{"".join(figures)}</div>')

    def maps(self) -> str:
        maps = analysis.heatmaps(self.runs, self.steps)
        if maps["final_eval_accuracy"].size <= 1:
            return ""
        figures = [self.figure(f) for f in charts.settling_maps(maps, int(self.runs["steps_done"].max()))]
        return f'<div class="pair">{"".join(figures)}</div>'

    def ladder(self) -> str:
        if not any(rung_of(task) for task in self.runs["task"]):
            return ""
        rungs = ladder_results.ladder_table(self.runs, self.baselines)
        verdict = f"<p>{html.escape(ladder_results.ladder_verdict(rungs))}</p>"
        if rungs.empty:
            return verdict
        shown = ladder_results.ladder_in_words(rungs)
        return verdict + self.figure(charts.ladder(rungs)) + _table(
            shown, {**{c: percent for c in (*ladder_results.LADDER_COLUMNS, *ladder_results.APPLIED_COLUMNS)},
                    "learned spread": points})

    def alarms(self) -> str:
        found = analysis.alarms(self.steps, self.learners)
        if found.empty:
            return '<p class="note">No alarms: no collapse, drop, stall, repetition or one-class answers.</p>'
        counts = found["kind"].value_counts()
        said = "<p>" + html.escape(", ".join(f"{n} {kind}" for kind, n in counts.items())) + "</p>"
        more = len(found) - MOST_ALARMS
        shown = found.head(MOST_ALARMS).rename(columns={"run_id": "run"})
        return said + _table(shown) + (f'<p class="note">and {more} more</p>' if more > 0 else "")

    def cost(self) -> str:
        costs = self.store.phase_costs(self.ids)
        if costs.empty:
            return '<p class="note">No step has been timed yet.</p>'
        totals = costs.groupby("phase")[["seconds", "tokens_in", "tokens_out", "cost"]].sum()
        order = [p for p in charts.PHASE_LABELS if p in totals.index]
        table = totals.reindex(order).reset_index()
        table["phase"] = table["phase"].map(charts.PHASE_LABELS)
        table = table.rename(columns={"tokens_in": "tokens in", "tokens_out": "tokens out"})
        measures = ["seconds"] + [m for m, columns in (("tokens", ["tokens in", "tokens out"]), ("cost", ["cost"]))
                                  if table[columns].to_numpy().sum() > 0]
        said = ("" if len(measures) == 3 else
                '<p class="note">No model calls: these runs spent no tokens and cost nothing.</p>'
                if len(measures) == 1 else '<p class="note">Tokens were not priced: set the price per token to '
                "see cost.</p>")
        figures = "".join(self.figure(charts.phase_costs(costs, m, by="run_id")) for m in measures)
        counts = {"seconds": lambda v: f"{v:,.2f}" if v < 10 else f"{v:,.1f}", "tokens in": lambda v: f"{v:,.0f}",
                  "tokens out": lambda v: f"{v:,.0f}", "cost": lambda v: f"{v:.4f}"}
        return _table(table, counts) + said + figures

    def notes(self) -> str:
        evaluated = self.runs.dropna(subset=["final_eval_accuracy"])
        if evaluated.empty:
            return '<p class="note">No run has been evaluated yet.</p>'
        best = evaluated.sort_values(["final_eval_accuracy", "best_eval_accuracy", "id"],
                                     ascending=[False, False, True]).iloc[0]
        run_id = int(best["id"])
        steps = self.store.steps(run_id)
        last = steps[-1]
        settings = ", ".join(f"{n} {_value_text(self.configs[run_id].get(n))}" for n in self.differing)
        said = (f"Run {run_id}" + (f" ({settings})" if settings else "")
                + f": final eval accuracy {percent(best['final_eval_accuracy'])} after step {last['step']}.")
        first = next((s for s in steps if s["step"] == 1), None)
        if first is None or last["step"] == 1:
            return (f"<p>{html.escape(said)} It has no revision after its first, so there is no diff.</p>"
                    f"<h3>Its notes after step {last['step']}</h3>{render.escaped_block(last['notes'])}")
        return (f"<p>{html.escape(said)}</p>"
                f"<h3>What changed from its first revision (step 1) to step {last['step']}</h3>"
                '<p class="note">Green: words added since; red, struck: words dropped.</p>'
                f"{render.inline_diff(first['notes'], last['notes'])}"
                f"<h3>Its notes after step {last['step']}</h3>{render.escaped_block(last['notes'])}")
