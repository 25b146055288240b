"""GBNF, llama.cpp's grammar language: the one place its literals are written (labels, decision lists)."""


def gbnf_literal(text: str) -> str:
    """A GBNF string literal that matches `text` exactly, whatever quotes or backslashes it holds."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'
