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
    assert all(sum(p.phase == "infer" for p in r.predictions) == 20 for r in records[1:])
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


def test_a_task_is_parsed_once_per_identity_and_again_when_its_file_changes(store, monkeypatch, tmp_path):
    from iml_core import builders
    from iml_core.manager import RunManager
    from iml_core.tasks import task_csv_text

    parsed = Counter()
    real = builders.load_task

    def counted(spec, *args):
        parsed[spec] += 1
        return real(spec, *args)

    monkeypatch.setattr(builders, "load_task", counted)
    builders._load.cache_clear()
    manager = RunManager(store)
    run_ids = manager.submit([RunConfig(steps=2, eval_size=20, seed=s) for s in (0, 1)])
    manager.join(timeout=60)
    assert {store.run(i)["status"] for i in run_ids} == {"completed"}
    assert parsed == {"paper": 1}  # two runs, each checked and then run: one generation

    csv = tmp_path / "task.csv"
    csv.write_text(task_csv_text(real("paper")), encoding="utf-8")
    config = RunConfig(task=str(csv), steps=1, eval_size=20)
    builders.build_task(config)
    builders.build_task(config)
    assert parsed[str(csv)] == 1
    last = csv.read_text(encoding="utf-8").splitlines()[-1]
    with csv.open("a", encoding="utf-8") as file:  # one more sample, changed in place
        file.write("999999" + last[last.index(","):] + "\n")
    assert len(builders.build_task(config).samples) == len(real("paper").samples) + 1
    assert parsed[str(csv)] == 2
