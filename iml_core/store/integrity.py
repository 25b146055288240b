"""Whether a run's stored steps are whole: steps 0..N, once each, every one with its predictions,
and the run's row saying N. A store that lost a committed step must say so rather than report a
run complete (docs/ARCHITECTURE.md §4): the runner checks a run when it ends and when it resumes,
a step's commit checks that the step before it is there, and `iml check` checks a whole file.
"""

from __future__ import annotations

from dataclasses import dataclass

from iml_core.errors import RunFailed
from iml_core.store.database import Database


@dataclass(frozen=True)
class Hole:
    run_id: int
    missing: tuple[int, ...]  # steps with no row, or a row without its predictions
    last_stored: int | None
    steps_done: int  # what the run's row says

    @property
    def first(self) -> int:
        # No step missing, yet the run's row says more were done: it goes on after its last stored step.
        return self.missing[0] if self.missing else (0 if self.last_stored is None else self.last_stored + 1)

    def describe(self) -> str:
        if self.missing:
            return f"run {self.run_id} lacks step{'s' if len(self.missing) > 1 else ''} {ranges(self.missing)}"
        return (f"run {self.run_id} says {self.steps_done} steps are done, and its last stored step is "
                f"{self.last_stored}")

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "missing": ranges(self.missing), "first_missing": self.first,
                "last_stored": self.last_stored, "steps_done": self.steps_done}


class LostSteps(RunFailed):
    """Steps this process committed are no longer in the store."""


def ranges(steps) -> str:
    """1, 3-5, 9: consecutive steps as one range."""
    parts, steps = [], sorted(steps)
    for i, step in enumerate(steps):
        if i and step == steps[i - 1] + 1:
            continue
        end = step
        while end + 1 in steps[i:]:
            end += 1
        parts.append(str(step) if end == step else f"{step}-{end}")
    return ", ".join(parts) or "none"


class Integrity(Database):
    def hole(self, run_id: int) -> Hole | None:
        """What is missing from a run's stored steps, or None when they are whole."""
        return self.holes([run_id]).get(run_id)

    def holes(self, run_ids=None) -> dict[int, Hole]:
        """Run id -> its hole, for the runs given (every run when None) that have one."""
        where = "" if run_ids is None else "WHERE r.id IN (SELECT unnest(?))"
        params = [] if run_ids is None else [[int(i) for i in run_ids]]
        with self.held() as cursor:
            runs = cursor.execute(f"SELECT r.id, r.steps_done FROM runs r {where}", params).fetchall()
            stored = cursor.execute(
                f"""SELECT s.run_id, s.step, EXISTS (SELECT 1 FROM predictions p WHERE p.run_id = s.run_id
                                                      AND p.step = s.step AND p.served = 'step')
                    FROM steps s JOIN runs r ON r.id = s.run_id {where} ORDER BY s.run_id, s.step""",
                params).fetchall()
        steps: dict[int, dict[int, bool]] = {}
        for run_id, step, whole in stored:
            steps.setdefault(run_id, {})[step] = whole
        found = {}
        for run_id, steps_done in runs:
            mine = steps.get(run_id, {})
            last = max(mine, default=None)
            missing = tuple(s for s in range(0, (last or 0) + 1) if not mine.get(s, False)) if mine else ()
            if missing or (last if last is not None else 0) != steps_done:
                found[run_id] = Hole(run_id, missing, last, steps_done)
        return found

    def check_follows(self, cursor, run_id: int, step: int) -> None:
        """Inside a step's commit: the step before it is stored, or this process's earlier commits
        were lost beneath it, and the run stops naming them instead of writing past a hole."""
        (last,) = cursor.execute("SELECT max(step) FROM steps WHERE run_id = ?", [run_id]).fetchone()
        expected = step - 1 if step > 0 else None
        if last == expected:
            return
        if last is None or last < expected:
            lost = f"step(s) {ranges(range(0 if last is None else last + 1, step))}"
        else:
            lost = f"a step {last} already stored before step {step}"
        raise LostSteps(
            f"run {run_id} found {lost}: what it committed earlier is not what the store {self.path} holds "
            "(something beneath the store lost them); it stops here rather than write past a hole. "
            f"Resume it (`iml resume {run_id}`) to compute them again, and run `iml check --db {self.path}` "
            "to see whether other runs lost steps too")

    def drop_steps_from(self, run_id: int, step: int) -> None:
        """A run cut back to the steps before `step`, to be resumed from there: the steps past a hole
        were computed from a step the store no longer has."""
        with self._transaction() as cursor:
            for table in ("predictions", "model_calls"):
                cursor.execute(f"DELETE FROM {table} WHERE run_id = ? AND step >= ? AND served = 'step'",
                               [run_id, step])
            for table in ("batch_notes", "candidates", "steps"):
                cursor.execute(f"DELETE FROM {table} WHERE run_id = ? AND step >= ?", [run_id, step])
            cursor.execute("UPDATE runs SET steps_done = ? WHERE id = ?", [max(step - 1, 0), run_id])
