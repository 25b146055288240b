"""Every prompt the LLM agent sends, in one place. A run stores these exact texts with itself.

The inference prompt puts what all samples of a step share (task, classes, notes) first and the
sample last, so llama.cpp reuses its KV cache for the shared part across the samples of a step.
Where the notes sit and whether the answer names a line of them is the run's prompt layout
(PROMPT_LAYOUTS); every layout keeps that order.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    # The layouts with the notes in the user turn: the system turn says only the task, and the
    # notes (or the in-context examples) come right before the sample, after the shared part.
    "infer_task_system": (
        "You sort each {noun} into exactly one of these classes: {classes}.\n"
        "You keep notes of what you learned from earlier answers and their feedback. Use them."
    ),
    "infer_notes_user": "Your notes, one numbered line per sentence:\n{notes}\n\n{ask}",
    # The plain layouts show the notes as written, one sentence a line, and ask for the class alone.
    "infer_system_plain": (
        "You sort each {noun} into exactly one of these classes: {classes}.\n"
        "You keep notes of what you learned from earlier answers and their feedback. Use them.\n\n"
        "Your notes:\n{notes}"
    ),
    "infer_notes_user_plain": "Your notes:\n{notes}\n\n{ask}",
    "infer_examples_task_system": "You sort each {noun} into exactly one of these classes: {classes}.",
    "infer_examples_user": "Here are {count} {noun}s whose class is known:\n{examples}\n\n{ask}",
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


# The prompts of the learners other than IML (iml_core.learners), apart from PROMPTS so that an IML
# run stores exactly the prompts it stored before learners were a choice.
LEARNER_PROMPTS = {
    "propose_system": "You are finding the rule that sorts each {noun} into one of these classes: {classes}.",
    "propose_user": (
        "Here are {noun}s whose class is known, grouped by class:\n{groups}\n\n"
        "Write {count} different candidate rules that would sort these {noun}s correctly. Each rule is one line "
        "that names, for every class, the {noun}s that belong to it.{style} Number the rules 1 to {count}. "
        "Write only the rules."
    ),
    # A rule that names one class and calls the rest "any other" is one this model size does not apply
    # (Qwen2.5-Coder-1.5B answered one class for all 24 samples with it, and 24 of 24 right with the same
    # feature named for each class): each class gets its own sentence.
    "propose_one_feature": (
        " Each rule must use exactly one feature, a different one in each rule, and give each class its own "
        "sentence, like: \"A {noun} that <has one value of the feature> is a {first}. A {noun} that <has "
        "another value of it> is a {second}.\""
    ),
    "propose_group": "{label}:\n{observations}",
    "operate_system": "You keep a playbook of numbered bullets on how to sort each {noun} into one of: {classes}.",
    "operate_user": (
        "Your playbook:\n{bullets}\n\nWhat happened:\n{trajectories}\n\n"
        "Change the playbook with a few operations, one a line: \"ADD: <a new bullet>\" adds a bullet, "
        "\"EDIT <number>: <its new text>\" rewrites one, \"REMOVE <number>\" removes one. Keep what is right; "
        "fix or remove what led to mistakes. Write only the operations."
    ),
    "simplify_user": (
        "This rule sorts {noun}s into {classes}:\n{rule}\n\n"
        "It may name more features than the class depends on. Rewrite it once for each feature it names, "
        "keeping only that one feature and dropping the others. Number the rewrites. Write only the rules."
    ),
}

# What a learner asks when the notes are a decision list (notes form rule, iml_core.decision_list):
# apart, so that a run in words stores exactly the prompts it stored before. The samples are shown
# as the rules read them (attribute = value), so a rule's words are the sample's.
RULE_PROMPTS = {
    "rule_system": ("You write decision lists that sort each {noun} into one of these classes: {classes}. A list "
                    "is read from the top: the first IF line whose conditions all hold names the class, and the "
                    "last line, ELSE, names it when none does."),
    "rule_form": ("Write it as lines \"IF attribute = value THEN class\" (conditions joined by AND when one is not "
                  "enough), then a last line \"ELSE class\". Use the attributes and values as they are written "
                  "above. Use as few lines and conditions as sort them all. Write only the list."),
    "rule_attribute_user": ("Here is how {noun}s of each class split on {attribute}, counted over recent {noun}s "
                            "whose class is known:\n{split}\n\nDoes {attribute} help tell the classes apart, that "
                            "is, do the {noun}s of a class all have the same {attribute}, while some other class has "
                            "another? Answer yes or no."),
    "rule_refine_user": ("This decision list sorts {noun}s:\n{rule}\n\nIt sorts these {noun}s wrong; each is "
                         "shown with its right class:\n{wrong}\n\nWrite a corrected decision list that sorts "
                         "them right and keeps what the list got right. {form}"),
    "rule_wrong": "- {features}: the list says {said}, the right class is {label}",
    "rule_induce_user": ("Your notes, a decision list:\n{notes}\n\nWhat happened with them in this batch:\n"
                         "{trajectories}\n\nWrite the decision list this batch teaches. {form}"),
    "rule_revise_user": ("Your notes, a decision list:\n{notes}\n\nWhat recent batches taught, each as a "
                         "decision list:\n{batch_notes}\n\nRewrite your notes as one decision list that "
                         "holds what is right in all of them.{keep} {form}"),
    "rule_revise_keep": " Keep its first lines exactly as they are.",
    "rule_trajectory": "- {features}: you answered {answer}; the right class was {label}",
    # How the model reads a list it applies (rule reading aligned and stepwise): the sample in the list's words.
    "rule_aligned_sample": "This {noun} has: {features}.",
    "rule_step_user": "A {noun} has: {sample}.\n\nDoes it have {conditions}? Answer yes or no.",
}
_ALL_PROMPTS = {**PROMPTS, **LEARNER_PROMPTS, **RULE_PROMPTS}


def fill(name: str, **values) -> str:
    return _ALL_PROMPTS[name].format(**values)


@dataclass(frozen=True)
class PromptLayout:
    """How the inference prompt is laid out: the PROMPTS that make each turn. `user` wraps the
    question (`{ask}`) with the notes; empty, the question is the whole user turn."""
    label: str  # how a page names it
    system: str
    user: str
    names_line: bool  # the notes are numbered and the answer names the line it relied on
    examples_system: str  # the in-context baseline: its examples sit where this layout's notes do
    examples_user: str

    @property
    def notes_turn(self) -> str:
        return "user" if self.user else "system"


# Placement (system or user turn) times answer (naming a line or not): each alone and both together
# can be told apart, which is why both plain variants exist. `system` is the layout every run had
# before layouts existed, so it is the default and its texts stay as they were: stored runs and
# the response cache (keyed by the messages) stay valid.
PROMPT_LAYOUTS = {
    "system": PromptLayout("system: notes numbered in the system turn, the answer names a line", "infer_system", "",
                           True, "infer_examples_system", ""),
    "user": PromptLayout("user: notes numbered in the user turn before the sample, the answer names a line",
                         "infer_task_system", "infer_notes_user", True, "infer_examples_task_system",
                         "infer_examples_user"),
    "plain": PromptLayout("plain: notes in the system turn, the answer is the class alone", "infer_system_plain", "",
                          False, "infer_examples_system", ""),
    "user-plain": PromptLayout("user-plain: notes in the user turn before the sample, the answer is the class alone",
                               "infer_task_system", "infer_notes_user_plain", False, "infer_examples_task_system",
                               "infer_examples_user"),
}
DEFAULT_LAYOUT = "system"
