"""Inside a step: the Live page says which phase a run is in and how far it got (iml_core.progress)."""

import time

from iml_core.config import RunConfig
from iml_core.progress import WATCHES, StepWatch


def test_a_phase_that_comes_back_adds_up_its_seconds_and_counts_its_calls():
    class Call:
        tokens_in, tokens_out = 30, 2

        def __init__(self, phase):
            self.phase = phase

    watch = StepWatch()
    assert watch.snapshot() is None
    watch.begin_step(3, {"infer": 4, "induce": 2, "revise": 1})
    watch.begin_phase("infer")
    watch.called(Call("infer"))
    time.sleep(0.05)
    watch.begin_phase("induce")  # accumulation: infer, induce, infer, induce
    watch.called(Call("induce"))
    watch.begin_phase("infer")
    now = watch.snapshot()
    assert (now.step, now.phase, now.answered, now.expected, now.calls, now.tokens_in) == (3, "infer", 1, 4, 2, 60)
    assert now.phase_seconds >= 0.05  # the first half's time counts
    assert now.seconds_left_in_phase == now.phase_seconds / 1 * 3


def test_a_running_llm_step_is_watched_call_by_call_and_forgotten_when_it_ends(store, tiny_model, monkeypatch):
    from iml_core.manager import RunManager

    # What the Live page would read at each model call, taken in the worker's own thread right after
    # the call: a poll from the test's thread misses a phase of one fast call (revise with the tiny
    # model) whenever the loaded machine delays the poll (a CI failure).
    run_ids, seen = [], []
    report_call = StepWatch.called

    def called_and_read(watch, call):
        report_call(watch, call)
        if run_ids:
            seen.append(WATCHES.now(run_ids[0]))

    monkeypatch.setattr(StepWatch, "called", called_and_read)
    config = RunConfig(agent="llm", backend="llama-server", model=str(tiny_model), steps=1, batch_size=3,
                       accumulation=2, eval_size=300, max_note_words=20, n_ctx=1024, cache=False)
    manager = RunManager(store)
    run_ids.extend(manager.submit([config]))
    manager.join(timeout=300)
    assert store.run(run_ids[0])["status"] == "completed"
    assert WATCHES.now(run_ids[0]) is None  # nothing is kept once the run is over
    assert seen and None not in seen  # every call was made under a watch the page could find
    phases = [(p.step, p.phase) for p in seen]
    # Step 0's evaluation (300 calls), then step 1's phases, each seen while it ran.
    assert (0, "eval") in phases and (1, "revise") in phases and phases.index((0, "eval")) < phases.index((1, "revise"))
    expected = {p.phase: p.expected for p in seen if p.step == 1}
    assert expected == {"infer": 6, "induce": 2, "revise": 1, "eval": 300}
    assert all(1 <= p.answered <= p.expected for p in seen)
    last_eval = [p for p in seen if p.phase == "eval"][-1]
    assert last_eval.answered == 300 and last_eval.calls == 6 + 2 + 1 + 300
