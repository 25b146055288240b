"""A widget for any setting, made from its row in iml_core.config.SETTINGS: its kind picks the
widget, its range bounds it and its help explains it, so no page writes a range of its own
(tests/test_settings.py checks every page against SETTINGS)."""

from __future__ import annotations

from iml_core.config import SETTINGS


def setting_input(container, name: str, value, *, key: str, label: str | None = None, slider: bool = False,
                  radio: bool = False, disabled: bool = False, help: str | None = None):
    """The widget for setting `name` in `container` (st, a column, a form), starting at `value`;
    returns what the user set, of the setting's own type."""
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
