"""Every prompt the LLM agent sends, in one place. A run stores these exact texts with itself.

The inference prompt puts what all samples of a step share (task, classes, notes) first and the
sample last, so llama.cpp reuses its KV cache for the shared part across the samples of a step.
"""

from __future__ import annotations

PROMPTS = {
    "infer_system": (
        "You sort each {noun} into exactly one of these classes: {classes}.\n"
        "You keep notes of what you learned from earlier answers and their feedback. Use them.\n\n"
        "Your notes, one numbered line per sentence:\n{notes}"
    ),
    "infer_user": "{observation}\nWhich class is it? Answer with the class name only.",
    # With notes, the answer also names the numbered line of the notes it relied on most.
    "infer_user_line": (
        "{observation}\nWhich class is it, and which line of your notes did you rely on most? "
        "Answer with the class name and the line number, like: {example}"
    ),
    # The in-context baseline: labelled examples where the notes would be, and no notes.
    "infer_examples_system": (
        "You sort each {noun} into exactly one of these classes: {classes}.\n"
        "Here are {count} {noun}s whose class is known:\n{examples}"
    ),
    "example": "- {observation} Class: {label}",
    "induce_system": (
        "You are learning to sort each {noun} into one of these classes: {classes}. "
        "You answered some {noun}s and got feedback."
    ),
    "induce_user": (
        "Your notes so far:\n{notes}\n\n"
        "What happened:\n{trajectories}\n\n"
        "In a few sentences, say what these experiences show: which features go with which class, "
        "and what your mistakes have in common. Write only that summary."
    ),
    "revise_system": "You keep short, accurate notes on how to sort each {noun} into one of: {classes}.",
    "revise_user": (
        "Your notes so far:\n{notes}\n\n"
        "What recent batches showed:\n{batch_notes}\n\n"
        "Rewrite your notes so they hold everything useful, in at most {max_words} words.{keep}"
        " Write only the notes."
    ),
    "revise_keep": " Keep the beginning of your notes exactly as it is: start with \"{prefix}\".",
    "no_notes": "(no notes yet)",
    "trajectory_label": "- {observation} You answered {answer}. The right class was {label}.",
    "trajectory_binary": "- {observation} You answered {answer}. That was {verdict}.",
}


def fill(name: str, **values) -> str:
    return PROMPTS[name].format(**values)
