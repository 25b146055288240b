"""HTML for model- and user-written text. Every piece of such text goes through html.escape and
sits inside markup of our own; the dashboard shows it with st.html, which runs no script, and the
study report (iml_core.report) writes it into its file."""

from __future__ import annotations

import html

from iml_core.diff import take_words, word_diff

STYLE = """<style>
.iml-text { white-space: pre-wrap; font-family: ui-monospace, Menlo, monospace; font-size: 0.85rem;
            line-height: 1.5; padding: 0.6rem 0.8rem; border: 1px solid #e3e6ea; border-radius: 6px; }
.iml-caption { color: rgba(49, 51, 63, 0.6); font-size: 0.875rem; overflow-wrap: anywhere; }
.iml-text ins { background: #d9f2dd; text-decoration: none; }
.iml-text del { background: #f8d7da; color: #7a2a31; }
.iml-text del + ins, .iml-text ins + del { margin-left: 3px; }
.iml-text mark.kept { background: #e8eefb; border-bottom: 2px solid #3b6ea8; }
.iml-legend { font-size: 0.8rem; color: #555; }
.iml-alert { padding: 0.75rem 1rem; border-radius: 0.5rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.iml-alert.error { background: #fdecea; color: #7d1a1a; }
.iml-alert.warning { background: #fff6dc; color: #6b4e00; }
.iml-sentences .unit { display: block; padding: 0.15rem 0.4rem; margin: 1px 0; border-radius: 3px; }
.iml-sentences .unit small { color: #555; margin-left: 0.6rem; font-family: system-ui, sans-serif; }
</style>"""


def escaped_block(text: str) -> str:
    return f'{STYLE}<div class="iml-text">{html.escape(text)}</div>'


def caption(text: str) -> str:
    """A caption that quotes user text (a model's path or name) literally."""
    return f'{STYLE}<div class="iml-caption">{html.escape(text)}</div>'


def alert(text: str, kind: str = "error") -> str:
    """A message that quotes model, server or file text: st.error would read it as Markdown."""
    if kind not in ("error", "warning"):
        raise ValueError(f"an alert is an error or a warning, not {kind!r}")
    return f'{STYLE}<div class="iml-alert {kind}" role="alert">{html.escape(text)}</div>'


def sentence_heatmap(units: list[str], usage: dict[int, tuple[int, int]]) -> str:
    """The notes, one sentence per row, each shaded by how often answers that relied on it were
    right (green) or wrong (red); stronger with more use. `usage`: unit number -> (right, wrong)."""
    most = max((r + w for r, w in usage.values()), default=0) or 1
    rows = []
    for number, unit in enumerate(units, start=1):
        right, wrong = usage.get(number, (0, 0))
        used = right + wrong
        if used:
            share = right / used
            red, green = int(220 - 110 * share), int(110 + 110 * share)
            alpha = 0.15 + 0.6 * used / most
            style = f' style="background: rgba({red}, {green}, 90, {alpha:.2f})"'
            detail = f"used {used}×: {right} right, {wrong} wrong"
        else:
            style, detail = "", "not used"
        rows.append(f'<span class="unit" data-sentence="{number}"{style}>[{number}] {html.escape(unit)}'
                    f"<small>{detail}</small></span>")
    return f'{STYLE}<div class="iml-text iml-sentences">{"".join(rows)}</div>'


def inline_diff(old: str, new: str) -> str:
    """One text: deleted words struck in red, inserted words green."""
    parts = []
    for segment in word_diff(old, new):
        text = html.escape(segment.text)
        parts.append({"insert": f"<ins>{text}</ins>", "delete": f"<del>{text}</del>"}.get(segment.op, text))
    return f'{STYLE}<div class="iml-text" data-view="inline">{"".join(parts)}</div>'


def side_by_side(old: str, new: str) -> tuple[str, str]:
    """The old text with its deletions marked, and the new text with its insertions marked."""
    left, right = [], []
    for segment in word_diff(old, new):
        text = html.escape(segment.text)
        if segment.op != "insert":
            left.append(f"<del>{text}</del>" if segment.op == "delete" else text)
        if segment.op != "delete":
            right.append(f"<ins>{text}</ins>" if segment.op == "insert" else text)
    return (f'{STYLE}<div class="iml-text" data-view="old">{"".join(left)}</div>',
            f'{STYLE}<div class="iml-text" data-view="new">{"".join(right)}</div>')


def notes_with_kept_prefix(notes: str, prefix_words: int) -> str:
    """The notes with the words momentum made the revision keep marked."""
    kept = take_words(notes, prefix_words)
    rest = notes[len(kept):]
    marked = f'<mark class="kept" title="kept by momentum">{html.escape(kept)}</mark>' if kept else ""
    return f'{STYLE}<div class="iml-text">{marked}{html.escape(rest)}</div>'


DECISION_COLOURS = {"chosen": "#d9f2dd", "kept": "#e8eefb", "rejected": "#f8d7da", "replaced": "#fff6dc"}


def candidates(rows: list[dict]) -> str:
    """What a learner weighed in a step (Store.candidates), one card each: its decision, where it came
    from, its measured score and why, then its text; every word of it escaped."""
    cards = []
    for row in rows:
        scored = f"{row['right']} of {row['scored']} right" if row["scored"] else "not scored"
        origin = row["origin"] + ("" if row.get("minibatch") is None else f" of minibatch {row['minibatch'] + 1}")
        cards.append(
            f'<div class="iml-candidate" data-decision="{html.escape(row["decision"])}" '
            f'style="background: {DECISION_COLOURS.get(row["decision"], "#fff")}">'
            f'<b>{html.escape(row["decision"])}</b> · {html.escape(origin)} · {html.escape(scored)}'
            f'<div class="iml-caption">{html.escape(row["reason"])}</div>'
            f'<div class="iml-text">{html.escape(row["text"])}</div></div>')
    return STYLE + '<style>.iml-candidate { padding: 0.5rem 0.7rem; margin: 0.4rem 0; border-radius: 6px; }</style>' \
        + "".join(cards)
