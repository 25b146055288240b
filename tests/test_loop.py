from collections import Counter

from iml_core.agents.offline import OfflineRuleLearner
from iml_core.config import RunConfig
from iml_core.learner import SampleStream, learning_steps

from conftest import offline_history, task_for


class CountingLearner(OfflineRuleLearner):
    """The real offline learner, counting which phases the loop asks of it at which step."""

    def __init__(self, *args):
        super().__init__(*args)
        self.calls = Counter()
        self.notes_seen = []

    def infer(self, notes, observations, phase):
        self.calls[("infer", phase.name, phase.step)] += 1
        return super().infer(notes, observations, phase)

    def induce(self, notes, trajectories, phase):
        self.calls[("induce", phase.step)] += 1
        self.notes_seen.append((phase.step, notes))
        return super().induce(notes, trajectories, phase)

    def revise(self, notes, batch_notes, required_prefix, max_words, phase):
        self.calls[("revise", phase.step)] += 1
        self.calls[("batch notes at revise", phase.step)] = len(batch_notes)
        return super().revise(notes, batch_notes, required_prefix, max_words, phase)


def run_counting(**settings):
    config = RunConfig(**settings)
    task = task_for(config)
    agent = CountingLearner(task.attributes, task.classes)
    return agent, list(learning_steps(task, agent, config))


def test_accumulation_infers_and_induces_k_minibatches_before_one_revision():
    agent, records = run_counting(steps=3, accumulation=4, batch_size=5, eval_every=10)
    for step in (1, 2, 3):
        assert agent.calls[("infer", "infer", step)] == 4
        assert agent.calls[("induce", step)] == 4
        assert agent.calls[("revise", step)] == 1
        assert agent.calls[("batch notes at revise", step)] == 4
    assert [len(r.batch_notes) for r in records[1:]] == [4, 4, 4]
    assert all(sum(p.phase == "train" for p in r.predictions) == 20 for r in records[1:])
    # All K minibatches of a step are inferred with the notes from before the revision.
    assert {notes for step, notes in agent.notes_seen if step == 2} == {records[1].notes}


def test_eval_runs_every_e_steps_and_after_the_last():
    agent, records = run_counting(steps=7, eval_every=3, eval_size=50)
    evaluated = [r.step for r in records if r.eval_accuracy is not None]
    assert evaluated == [0, 3, 6, 7]
    assert all(agent.calls[("infer", "eval", s)] == 1 for s in evaluated)
    assert sum(p.phase == "eval" for p in records[3].predictions) == 50


def test_the_same_seed_gives_the_same_history_and_another_seed_another():
    first = [(r.notes, r.eval_accuracy) for r in offline_history(steps=8, seed=5)]
    again = [(r.notes, r.eval_accuracy) for r in offline_history(steps=8, seed=5)]
    other = [(r.notes, r.eval_accuracy) for r in offline_history(steps=8, seed=6)]
    assert first == again
    assert first != other


def test_resuming_after_a_step_continues_exactly():
    whole = offline_history(steps=12, seed=2, batch_size=8)
    config = RunConfig(steps=12, seed=2, batch_size=8)
    task = task_for(config)
    resumed = list(learning_steps(task, OfflineRuleLearner(task.attributes, task.classes), config,
                                  after_step=5, notes=whole[5].notes))
    assert [r.step for r in resumed] == list(range(6, 13))
    assert [(r.notes, r.eval_accuracy, r.train_accuracy) for r in resumed] == \
        [(r.notes, r.eval_accuracy, r.train_accuracy) for r in whole[6:]]


def test_eval_split_is_held_out_and_the_stream_walks_every_training_sample():
    task = task_for(RunConfig())
    stream = SampleStream(task, seed=1, eval_size=200)
    eval_ids = {s.id for s in stream.eval}
    assert len(eval_ids) == 200
    n = len(stream.train)
    epoch = [s.id for g in range(n // 10) for s in stream.minibatch(g, 10)]
    assert not eval_ids & set(epoch)
    assert len(set(epoch)) == len(epoch) == n - n % 10
    assert [s.id for s in SampleStream(task, 2, 200).eval] != [s.id for s in stream.eval]


def test_binary_feedback_never_shows_the_agent_the_label():
    class Watching(CountingLearner):
        told = []

        def induce(self, notes, trajectories, phase):
            self.told.extend(t.true_label for t in trajectories)
            return super().induce(notes, trajectories, phase)

    config = RunConfig(steps=2, feedback="binary")
    task = task_for(config)
    agent = Watching(task.attributes, task.classes)
    list(learning_steps(task, agent, config))
    assert agent.told and set(agent.told) == {None}


def test_a_run_builds_its_task_and_agent_once(store, monkeypatch, tmp_path):
    from iml_core import cli, runner

    built = Counter()

    def counted(name):
        real = getattr(runner, name)

        def build(*args, **kwargs):
            built[name] += 1
            return real(*args, **kwargs)
        return build

    for name in ("build_task", "build_agent"):
        monkeypatch.setattr(runner, name, counted(name))
    manager = runner.RunManager(store)
    run_ids = manager.submit([RunConfig(steps=2, eval_size=20, seed=s) for s in (0, 1)])
    manager.join(timeout=60)
    assert {store.run(i)["status"] for i in run_ids} == {"completed"}
    assert built == {"build_task": 2, "build_agent": 2}  # checked once each, and that build ran them
    built.clear()
    assert cli.main(["run", "--steps", "2", "--eval-size", "20", "--db", str(tmp_path / "cli.duckdb")]) == 0
    assert built == {"build_task": 1, "build_agent": 1}
