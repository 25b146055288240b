"""A widget for any setting, made from its row in iml_core.config.SETTINGS: its kind picks the
widget, its range bounds it and its help explains it, so no page writes a range of its own
(tests/test_settings.py checks every page against SETTINGS)."""

from __future__ import annotations

import streamlit as st

from iml_core.config import SETTINGS

# Streamlit forgets a widget's value once a page without it is shown, so every visit to a page would
# start it anew. Each widget's last value is kept under this prefix, for the session, and is where
# the widget starts on the next visit.
KEPT = "kept:"


def kept(key: str, default):
    """Where the widget `key` starts: its value when this session last showed it, else `default`."""
    return st.session_state.get(KEPT + key, default)


def keep(key: str, value, default=None):
    """Remembers the widget `key`'s value for the next visit (another page may set it too: Data's
    *Use on New run*), unless it is the page's own default, which may change meanwhile (the layout
    suggested for another model); returns it."""
    if value == default:
        st.session_state.pop(KEPT + key, None)
    else:
        st.session_state[KEPT + key] = value
    return value


def setting_input(container, name: str, value, *, key: str, label: str | None = None, slider: bool = False,
                  radio: bool = False, disabled: bool = False, help: str | None = None):
    """The widget for setting `name` in `container` (st, a column, a form), starting where this
    session last left it, else at `value`; returns what the user set, of the setting's own type."""
    return keep(key, _widget(container, name, kept(key, value), key=key, label=label, slider=slider, radio=radio,
                             disabled=disabled, help=help), value)


def _widget(container, name: str, value, *, key: str, label: str | None, slider: bool, radio: bool, disabled: bool,
            help: str | None):
    setting = SETTINGS[name]
    label = label or setting.label
    help_text = help or (f"{setting.help} (valid: {setting.range_text()})" if setting.range_text() else setting.help)
    if setting.kind in ("integer", "number"):
        kind = int if setting.kind == "integer" else float
        step = kind(setting.step or 1) if setting.kind == "integer" else float(setting.step or 0.01)
        bounds = dict(min_value=kind(setting.low), max_value=kind(setting.high), step=step, key=key, help=help_text,
                      disabled=disabled)
        if slider:
            return container.slider(label, value=kind(value), **bounds)
        chosen = container.number_input(label, value=None if value is None else kind(value), **bounds)
        return None if chosen is None else kind(chosen)
    if setting.kind == "choice":
        values = list(setting.values)
        widget = container.radio if radio else container.selectbox
        options = dict(horizontal=True) if radio else {}
        return widget(label, values, index=values.index(value) if value in values else None,
                      format_func=setting.describe, key=key, help=help_text, disabled=disabled, **options)
    if setting.kind == "flag":
        return container.checkbox(label, value=bool(value), key=key, help=help_text, disabled=disabled)
    return container.text_input(label, value or "", key=key, help=help_text, disabled=disabled)
