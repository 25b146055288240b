"""What the LLM agent asks when its notes are decision lists (notes form rule, issue 35): proposals,
refinements, and IML's induction and revision, each written under a grammar made from the task."""

from __future__ import annotations

from typing import Sequence

from iml_core.agents import Phase, Prediction, Trajectory
from iml_core.decision_list import DecisionList, RuleError, simplest_fits
from iml_core.prompts import PROMPTS, fill
from iml_core.tasks import Observation

RULE_TOKENS = 160  # a decision list of up to 8 lines under the grammar
ANSWER_TOKENS = 4  # yes or no: a tokenizer may spell "yes" in three tokens
YES_NO_GRAMMAR = 'root ::= "yes" | "no"'


class RuleWriter:
    """Mixed into iml_core.agents.llm.LLMAgent, whose `_call`, `rules`, `task` and backend it uses."""

    def _rule_call(self, phase: Phase, messages, key_extra: dict, prefix: str = "") -> str:
        """One decision list written under the task's grammar, in its canonical form; '' when the
        answer is none (a remote server, which no grammar binds): the caller drops it."""
        grammar = self.rules.grammar()
        out = self._call(phase, "text", messages, key_extra={**key_extra, "form": "rule"},
                         call=lambda seed: self.backend.text(messages, temperature=self.temperature, seed=seed,
                                                             max_tokens=RULE_TOKENS, prefix=prefix, grammar=grammar))
        try:
            return str(self.rules.parse(out.text))
        except RuleError:
            return ""

    def _rule_messages(self, user: str) -> list[dict]:
        return [{"role": "system", "content": fill("rule_system", **self._shared)}, {"role": "user", "content": user}]

    def propose_rules(self, trajectories: Sequence[Trajectory], count: int, evidence: Sequence, phase: Phase
                      ) -> list[str]:
        """Decision lists from the labelled `evidence` (the recent samples, this minibatch's among
        them), decomposed into what a small model does reliably: for each attribute, shown how each
        class's samples split on it, the model answers whether it tells the classes apart (yes or
        no, under a grammar). The `count` lists worth most on the evidence are then fitted over the
        attributes it chose (iml_core.decision_list.simplest_fits).
        Asked for a whole list, or a line per class, Qwen2.5-Coder-1.5B walked the attributes in
        the order they were listed whatever the counts said (22.8% and 34.5% on the paper preset);
        asked one attribute at a time, it reads the counts."""
        examples = [(s.features, s.label) for s in evidence]
        if not examples:
            return []
        chosen = []
        for name in self.rules.values:
            user = fill("rule_attribute_user", noun=self.task.noun, attribute=name,
                        split=self.rules.split(examples, name))
            out = self._call(phase, "text", self._rule_messages(user),
                             key_extra={"evidence": [s.id for s in evidence], "attribute": name, "form": "rule"},
                             call=lambda seed, user=user: self.backend.text(
                                 self._rule_messages(user), temperature=self.temperature, seed=seed,
                                 max_tokens=ANSWER_TOKENS, grammar=YES_NO_GRAMMAR))
            if out.text.strip().lower().startswith("yes"):
                chosen.append(name)
        if not chosen:
            return []
        kept = set(chosen)
        return [str(rules) for rules in simplest_fits(
            [({a: v for a, v in f.items() if a in kept}, label) for f, label in examples], self.rules, count=count)]

    def read_stepwise(self, rules: DecisionList, observations: Sequence[Observation], phase: Phase
                      ) -> list[Prediction]:
        """The list applied by the model one line at a time (decomposed, after Ask Me Anything): for each
        line from the top, does the sample meet its conditions, yes or no under a grammar; the first
        yes names the class, and the ELSE line names it when no line holds. The model only matches
        conditions to a sample; the engine walks the list. Up to one call per line and sample."""
        def one(observation: Observation) -> Prediction:
            sample = self.rules.aligned(observation.features)
            said = []
            for number, line in enumerate(rules.lines, start=1):
                conditions = " and ".join(f"{a} = {v}" for a, v in line.conditions)
                user = fill("rule_step_user", noun=self.task.noun, sample=sample, conditions=conditions)
                messages = self._rule_messages(user)
                out = self._call(phase, "text", messages,
                                 key_extra={"sample": observation.id, "conditions": conditions, "form": "rule"},
                                 call=lambda seed, messages=messages: self.backend.text(
                                     messages, temperature=self.temperature, seed=seed, max_tokens=ANSWER_TOKENS,
                                     grammar=YES_NO_GRAMMAR))
                said.append(f"line {number}: {out.raw.strip()}")
                if out.text.strip().lower().startswith("yes"):
                    return Prediction(line.label, "; ".join(said), number)
            return Prediction(rules.default, "; ".join(said), len(rules.lines) + 1)

        return self._each(one, observations)

    def refine_rule(self, rule: str, wrong: Sequence[tuple[Observation, str, str]], phase: Phase) -> list[str]:
        """The rule corrected, shown the samples it sorts wrong as (sample, what it said, right class)."""
        shown = "\n".join(fill("rule_wrong", features=self.rules.aligned(o.features), said=said, label=label)
                          for o, said, label in wrong)
        user = fill("rule_refine_user", noun=self.task.noun, rule=rule, wrong=shown, form=fill("rule_form"))
        refined = self._rule_call(phase, self._rule_messages(user),
                                  {"refine": rule, "wrong": [o.id for o, _, _ in wrong]})
        return [refined] if refined else []

    def _induce_rule(self, notes: str, trajectories: Sequence[Trajectory], phase: Phase) -> str:
        shown = "\n".join(fill("rule_trajectory", features=self.rules.aligned(t.observation.features),
                               answer=t.prediction.label or "no class", label=t.true_label or
                               ("that answer" if t.correct else "another class")) for t in trajectories)
        user = fill("rule_induce_user", notes=notes.strip() or PROMPTS["no_notes"], trajectories=shown,
                    form=fill("rule_form"))
        return self._rule_call(phase, self._rule_messages(user),
                               {"batch": [t.observation.id for t in trajectories]}) or "(no decision list)"

    def _revise_rule(self, notes: str, batch_notes: Sequence[str], required_prefix: str, phase: Phase) -> str:
        """Momentum keeps whole lines: the prefix is the old list's first lines, and the model writes on."""
        keep = fill("rule_revise_keep") if required_prefix.strip() else ""
        user = fill("rule_revise_user", notes=notes.strip() or PROMPTS["no_notes"], keep=keep, form=fill("rule_form"),
                    batch_notes="\n\n".join(f"Batch {k}:\n{text}" for k, text in enumerate(batch_notes, 1)))
        prefix = required_prefix.rstrip("\n") + "\n" if required_prefix.strip() else ""
        return self._rule_call(phase, self._rule_messages(user), {"prefix": required_prefix}, prefix) or notes
