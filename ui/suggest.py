"""The template suggestion lives with the templates (``ffc.runtime.chat.templates.detect``): the compiler's
``template: auto`` and the UI share it."""

from ffc.runtime.chat.templates.detect import suggest_template

__all__ = ["suggest_template"]
