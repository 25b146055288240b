import hashlib
import itertools
import json
import re
from collections import Counter

import pytest

from iml_core.errors import UserError
from iml_core.tasks import (DATA_DIR, DOMAINS, PRESETS, RULE_KNOBS, benchmark_files, generate_benchmark,
                            load_csv_task, load_task, parse_csv_task, parse_rules_spec, rule_card_text, rules_spec,
                            task_csv_text, write_benchmark)


def table_label(task, sample):
    card = task.rule_card
    for row in card["table"]:
        if all(sample.features[a] == v for a, v in row["when"].items()):
            return row["class"]
    raise AssertionError("no table row matches")


def test_paper_preset_is_the_papers_benchmark():
    task = generate_benchmark("paper")
    assert len(task.samples) == 3200
    assert len(task.attributes) == 10 and all(len(a.values) == 2 for a in task.attributes)
    assert len(task.classes) == 4
    card = task.rule_card
    assert len(card["relevant"]) == 2 and len(card["table"]) == 4
    assert {row["class"] for row in card["table"]} == set(task.classes)
    assert all(s.label == table_label(task, s) for s in task.samples)
    balance = Counter(s.label for s in task.samples)
    assert min(balance.values()) > 700, balance
    assert all(s.text.startswith("This creature ") and s.text.endswith(".") for s in task.samples)
    sample = task.samples[0]
    assert all(a.phrase(sample.features[a.name]) in sample.text for a in task.attributes)


def test_hard_preset_has_many_valued_attributes_and_an_interacting_table():
    task = generate_benchmark("hard")
    assert any(len(a.values) > 2 for a in task.attributes)
    card = task.rule_card
    assert len(card["relevant"]) == 3
    assert all(s.label == table_label(task, s) for s in task.samples)
    # Every relevant attribute matters: dropping it leaves two rows that disagree.
    for dropped in card["relevant"]:
        seen = {}
        clash = False
        for row in card["table"]:
            rest = tuple(v for a, v in row["when"].items() if a != dropped)
            clash |= seen.setdefault(rest, row["class"]) != row["class"]
        assert clash, dropped


def test_label_noise_flips_about_that_share_of_labels():
    task = generate_benchmark("paper", label_noise=0.1)
    flipped = sum(s.label != table_label(task, s) for s in task.samples) / len(task.samples)
    assert 0.08 < flipped < 0.12
    assert generate_benchmark("noisy").rule_card["label_noise"] == 0.1


def test_generation_is_determined_by_the_seed():
    assert task_csv_text(generate_benchmark("paper", seed=3)) == task_csv_text(generate_benchmark("paper", seed=3))
    assert task_csv_text(generate_benchmark("paper", seed=3)) != task_csv_text(generate_benchmark("paper", seed=4))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_shipped_data_files_are_reproduced_byte_for_byte(preset):
    csv_path, card_path = benchmark_files(preset, DATA_DIR)
    task = generate_benchmark(preset)
    assert csv_path.read_bytes() == task_csv_text(task).encode("utf-8")
    assert card_path.read_bytes() == rule_card_text(task).encode("utf-8")


def test_write_benchmark_writes_the_same_bytes(tmp_path):
    csv_path, card_path = write_benchmark("paper", tmp_path)
    assert csv_path.read_bytes() == benchmark_files("paper", DATA_DIR)[0].read_bytes()
    assert card_path.read_bytes() == benchmark_files("paper", DATA_DIR)[1].read_bytes()


def test_the_shipped_csv_loads_back_as_the_same_task():
    preset = generate_benchmark("paper")
    from_file = load_task(str(benchmark_files("paper", DATA_DIR)[0]))
    assert from_file.samples == preset.samples
    assert set(from_file.classes) == set(preset.classes)


def test_a_csv_without_text_gets_a_sentence_per_row():
    task = parse_csv_task(b"colour,shape,kind\nred,round,apple\ngreen,long,cucumber\n", "veg.csv", "kind")
    assert task.classes == ("apple", "cucumber")
    assert task.samples[0].text == "A sample where colour is red and shape is round."
    assert task.samples[1].features == {"colour": "green", "shape": "long"}


@pytest.mark.parametrize("data, problem", [
    (b"", "is empty"),
    (b"  \n\n", "is empty"),
    (b"colour,label\n\xff\xfe,a\n", "not UTF-8"),
    (b"colour,colour,label\nred,red,a\nblue,blue,b\n", "'colour' more than once"),
    (b"colour,kind\nred,a\nblue,b\n", "no label column 'label'"),
    (b"colour,label\nred,a\nblue,a\n", "two classes"),
    (b"colour,label\nred,a\nblue\n", "row 3"),
    (b"label\na\nb\n", "no feature columns"),
    (b"colour,label\nred,a\n", "at least two"),
    (b"colour,label\nred,\nblue,b\n", "empty 'label'"),
    (b"colour,Label\nred,a\nblue,b\n", "no label column 'label' (its columns: colour, Label); did you mean 'Label'?"),
    (b"id,colour,label\n1,red,a\n99999999999999999999,blue,b\n",
     "the id 99999999999999999999 in mine.csv is larger than 9223372036854775807, the largest 64-bit id"),
])
def test_bad_csvs_are_refused_with_the_problem_named(data, problem):
    with pytest.raises(UserError, match=re.escape(problem)):
        parse_csv_task(data, "mine.csv")


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csvs_as_spreadsheets_write_them_are_read_alike(delimiter):
    rows = [["id", "colour", "size", "label"], ["1", "red, dark", "big", "a"], ["2", "blue", "small", "b"],
            ["9223372036854775807", "green", "big", "a"]]
    text = "\n".join(delimiter.join(f'"{c}"' if "," in c and delimiter == "," else c for c in row) for row in rows)
    task = parse_csv_task(text.encode(), "sheet.csv")
    assert [s.id for s in task.samples] == [1, 2, 9223372036854775807]
    assert task.samples[0].features == {"colour": "red, dark", "size": "big"}
    from iml_core.tasks import csv_columns
    assert csv_columns(text.encode(), "sheet.csv") == ["id", "colour", "size", "label"]


def test_a_64_bit_id_is_stored(store, tmp_path):
    from iml_core.config import RunConfig
    from iml_core.runner import create_run, execute_run
    path = tmp_path / "big-ids.csv"
    path.write_text("id;colour;label\n" + "".join(f"{2**62 + i};{'red' if i % 2 else 'blue'};{'ab'[i % 2]}\n"
                                                  for i in range(12)))
    run_id = create_run(store, RunConfig(task=str(path), steps=1, batch_size=2, eval_size=4))
    execute_run(store, run_id)
    assert {p["sample_id"] for p in store.predictions(run_id)} <= {2**62 + i for i in range(12)}


def test_missing_csv_and_unknown_preset_name_the_way_out(tmp_path):
    with pytest.raises(UserError, match="no such task file"):
        load_task(str(tmp_path / "nope.csv"))
    with pytest.raises(UserError, match="choose a preset"):
        load_task("papper")
    with pytest.raises(UserError, match="folder"):
        load_csv_task(tmp_path)


def test_a_saved_csv_task_loads_back_the_same_and_is_never_overwritten(tmp_path):
    from iml_core.tasks import save_task
    task = parse_csv_task(b"colour,kind\nred,apple\n\"green, pale\",pear\n", "fruit.csv", "kind")
    path = save_task(task, "fruit", tmp_path)
    again = load_csv_task(path)
    def rows(t):
        return [(s.features, s.text, s.label) for s in t.samples]
    assert rows(again) == rows(task)
    with pytest.raises(UserError, match="exists already"):
        save_task(task, "fruit", tmp_path)
    with pytest.raises(UserError, match="may use letters"):
        save_task(task, "../escape", tmp_path)
    with pytest.raises(UserError, match="preset"):
        save_task(task, "paper", tmp_path)


def test_formula_like_cells_are_found_in_every_column():
    from iml_core.tasks import formula_like_cells
    task = parse_csv_task(b"colour,kind\n=1+2,apple\nred,@SUM(A1)\ngreen,pear\n", "f.csv", "kind")
    assert formula_like_cells(task) == [(0, "colour", "=1+2"), (1, "label", "@SUM(A1)")]


# --- a preset that claims to be another plus noise ---------------------------------------

@pytest.mark.parametrize("preset", [name for name, p in PRESETS.items() if p.base])
def test_a_preset_that_is_another_plus_noise_shares_its_rule_card_and_samples(preset):
    noisy, base = generate_benchmark(preset), generate_benchmark(PRESETS[preset].base)
    assert noisy.rule_card["relevant"] == base.rule_card["relevant"]
    assert noisy.rule_card["table"] == base.rule_card["table"]
    assert [s.features for s in noisy.samples] == [s.features for s in base.samples]
    assert [s.text for s in noisy.samples] == [s.text for s in base.samples]
    replaced = sum(a.label != b.label for a, b in zip(noisy.samples, base.samples, strict=True)) / len(base.samples)
    assert abs(replaced - PRESETS[preset].label_noise) < 0.02, replaced
    # Notes learned on the base preset know the noisy one's rule.
    from iml_core.agents.llm import rule_card_notes
    from iml_core.truth import TruthScorer
    assert TruthScorer(noisy).score(rule_card_notes(base)).rule_recall == 1.0


def test_label_noise_on_a_preset_replaces_labels_and_nothing_else():
    quiet, noisy = generate_benchmark("hard"), generate_benchmark("hard", label_noise=0.2)
    assert [s.features for s in noisy.samples] == [s.features for s in quiet.samples]
    assert noisy.rule_card["table"] == quiet.rule_card["table"]


# --- generated tasks ----------------------------------------------------------------------


def matters(task, attribute):
    seen, rows = {}, task.rule_card["table"]
    return any(seen.setdefault(tuple(v for a, v in row["when"].items() if a != attribute), row["class"])
               != row["class"] for row in rows)


def test_a_spec_names_its_task_canonically_and_reproducibly():
    task = load_task("rules:relevant=1,classes=2,attributes=3")
    assert task.name == ("rules:classes=2,attributes=3,values=2,relevant=1,form=table,noise=0,domain=creatures,"
                         "samples=1000,seed=0")
    assert load_task(" rules: attributes = 3 , CLASSES=2,form=TABLE,") is task  # equal specs: the same task
    assert task.source == {"rules": task.name} and task.rule_card["task"] == task.name
    assert load_task("rules") is load_task("rules:") is load_task(rules_spec(
        {name: knob.default for name, knob in RULE_KNOBS.items()}))
    from iml_core.tasks import _generated
    _generated.cache_clear()  # generated again from nothing, byte for byte
    again = load_task(task.name)
    assert again is not task and task_csv_text(again) == task_csv_text(task)
    assert rule_card_text(again) == rule_card_text(task)
    assert task_csv_text(load_task(task.name.replace("seed=0", "seed=1"))) != task_csv_text(task)


@pytest.mark.parametrize("form", ["table", "list", "count"])
@pytest.mark.parametrize("classes, values, relevant", [(2, 2, 1), (3, 3, 2), (4, 2, 3), (5, 5, 4), (8, 3, 2)])
def test_every_form_gives_a_full_table_where_every_class_occurs_and_every_relevant_attribute_matters(
        form, classes, values, relevant):
    spec = f"rules:form={form},classes={classes},values={values},relevant={relevant},attributes=6,samples=300"
    if form == "count" and classes > relevant + 1:
        with pytest.raises(UserError, match=rf"form=count with relevant={relevant} .* lower classes to {relevant + 1}"):
            load_task(spec)
        return
    task = load_task(spec)
    card = task.rule_card
    assert len(task.classes) == classes and len(task.samples) == 300 and len(task.attributes) == 6
    assert all(len(a.values) == values for a in task.attributes)
    assert len(card["relevant"]) == relevant and card["form"] == form
    assert len(card["table"]) == values ** relevant  # every combination of the relevant values, once
    assert len({tuple(row["when"].values()) for row in card["table"]}) == values ** relevant
    assert {row["class"] for row in card["table"]} == set(task.classes)
    assert all(matters(task, a) for a in card["relevant"])
    assert all(s.label == table_label(task, s) for s in task.samples)  # no noise: the table is the truth
    assert card["rules"] and all(sentence.endswith(".") for sentence in card["rules"])


def test_a_decision_list_reads_as_ordered_rules_with_a_default():
    card = load_task("rules:form=list,classes=3,values=3,relevant=2").rule_card
    first, *middle, last = card["rules"]
    assert not first.startswith("Otherwise") and all(s.startswith("Otherwise, a creature that ") for s in middle)
    assert re.fullmatch(r"Otherwise, any other creature is a (Florp|Zindle|Quarrow)\.", last)


def test_a_count_rule_gives_the_class_by_how_many_marked_values_a_sample_has():
    task = load_task("rules:form=count,classes=3,relevant=4,values=3,attributes=5")
    card = task.rule_card
    by_count = {}
    for row in card["table"]:
        count = sum(row["when"][a] == v for a, v in card["marked"].items())
        by_count.setdefault(count, set()).add(row["class"])
    assert sorted(by_count) == [0, 1, 2, 3, 4] and all(len(c) == 1 for c in by_count.values())
    in_order = [by_count[k].pop() for k in range(5)]
    # Each class holds one range of counts.
    assert len(set(in_order)) == 3 and sum(a != b for a, b in zip(in_order[:-1], in_order[1:], strict=True)) == 2
    assert card["rules"][0].startswith("The class depends on how many of these hold for a creature: ")


def test_noise_replaces_labels_of_the_same_samples_under_the_same_rule():
    quiet, noisy, noisier = (load_task(f"rules:classes=3,values=3,relevant=2,samples=4000,noise={n}")
                             for n in (0, 0.1, 0.3))
    assert noisy.rule_card["table"] == quiet.rule_card["table"] == noisier.rule_card["table"]
    assert [s.features for s in noisy.samples] == [s.features for s in quiet.samples]
    replaced = {n: {s.id for s, q in zip(t.samples, quiet.samples, strict=True) if s.label != q.label}
                for n, t in ((0.1, noisy), (0.3, noisier))}
    assert 0.08 < len(replaced[0.1]) / 4000 < 0.12 and 0.27 < len(replaced[0.3]) / 4000 < 0.33
    assert replaced[0.1] <= replaced[0.3]
    # More samples extend the same sequence.
    assert load_task("rules:classes=3,values=3,relevant=2,samples=100").samples == quiet.samples[:100]


def test_the_label_noise_setting_is_a_generated_task_s_noise_knob():
    assert load_task("rules:values=3", label_noise=0.2).name == load_task("rules:values=3,noise=0.2").name
    assert load_task("rules:noise=0.2", label_noise=0.2).rule_card["label_noise"] == 0.2
    with pytest.raises(UserError, match=r"sets noise=0.1 and the label noise setting is 0.2: give the noise once"):
        load_task("rules:noise=0.1", label_noise=0.2)


def test_another_domain_words_the_same_rule_differently():
    creatures = load_task("rules:classes=3,values=3,relevant=2,attributes=5")
    loans = load_task("rules:classes=3,values=3,relevant=2,attributes=5,domain=loans")
    assert loans.noun == "applicant" and loans.samples[0].text.startswith("This applicant ")
    assert set(loans.classes) == set(DOMAINS["loans"].classes[:3]) and not set(loans.classes) & set(creatures.classes)
    assert not {a.name for a in loans.attributes} & {a.name for a in creatures.attributes}
    # The same shape: relevant positions, table and labels correspond one for one.
    names = {c.name: l.name for c, l in zip(creatures.attributes, loans.attributes, strict=True)}
    assert [names[a] for a in creatures.rule_card["relevant"]] == loans.rule_card["relevant"]
    classes = dict(zip(creatures.classes, loans.classes, strict=True))
    assert [classes[s.label] for s in creatures.samples] == [s.label for s in loans.samples]
    assert loans.rule_card["rules"][0].startswith("An applicant that ") and "gets the decision" in \
        loans.rule_card["rules"][0]
    from iml_core.agents.llm import rule_card_notes
    from iml_core.truth import TruthScorer
    assert TruthScorer(loans).score(rule_card_notes(loans)).rule_recall == 1.0


@pytest.mark.parametrize("spec, problem", [
    ("rules:classes=9", "classes=9 in the task spec 'rules:classes=9' is out of range: classes is from 2 to 8"),
    ("rules:attributes=0", "attributes is from 1 to 20"),
    ("rules:values=6", "values is from 2 to 5"),
    ("rules:relevant=5,attributes=6", "relevant is from 1 to 4"),
    ("rules:noise=0.96", "noise is from 0 to 0.95"),
    ("rules:noise=nan", "noise is from 0 to 0.95"),
    ("rules:samples=5", "samples is from 20 to 100000"),
    ("rules:classes=two", "classes=two in the task spec 'rules:classes=two' is not a whole number"),
    ("rules:form=tree", "form is table, list or count; write one, e.g. form=table"),
    ("rules:domain=ships", "domain is creatures or loans"),
    ("rules:depth=2", "unknown knob 'depth' in the task spec 'rules:depth=2'; the knobs are classes, attributes"),
    ("rules:classes", "'classes' in the task spec 'rules:classes' is not knob=value"),
    ("rules:seed=1,seed=2", "the knob 'seed' is given twice"),
    ("rules:relevant=3,attributes=2", "relevant=3 is more than attributes=2 in the task spec"),
    ("rules:classes=5,values=2,relevant=2", "classes=5 needs at least 5 combinations of the relevant attributes' "
                                            "values, but relevant=2 with values=2 gives 4; lower classes or raise"),
    ("rules:form=count,classes=4,relevant=2", "form=count with relevant=2 counts 0 to 2 marked values, so it tells "
                                              "at most 3 classes apart, not classes=4; lower classes to 3 or raise "
                                              "relevant to 3"),
])
def test_bad_specs_name_the_knob_its_range_and_the_fix(spec, problem):
    with pytest.raises(UserError, match=re.escape(problem)):
        parse_rules_spec(spec)
    with pytest.raises(UserError, match=re.escape(problem)):
        load_task(spec)


# --- a rule card for a user's own CSV -----------------------------------------------------

TOY = "feathers,fur,tail,label\n" + "".join(
    f"{f},{u},{t},{'Florp' if f == 'yes' else 'Zindle'}\n"
    for f, u, t in itertools.product(["yes", "no"], ["yes", "no"], ["long", "short"])) * 5
TOY_CARD = {"relevant": ["feathers"], "table": [{"when": {"feathers": "yes"}, "class": "Florp"},
                                                {"when": {"feathers": "no"}, "class": "Zindle"}],
            "rules": ["Creatures with feathers are Florp."]}


def with_card(tmp_path, card, csv_text=TOY, name="toy"):
    csv_path = tmp_path / f"{name}.csv"
    csv_path.write_text(csv_text)
    (tmp_path / f"{name}.rules.json").write_text(card if isinstance(card, str) else json.dumps(card))
    return csv_path


def test_a_csv_with_a_rules_file_gets_its_rule_card_an_oracle_and_rule_recall(tmp_path, store):
    from iml_core.agents.llm import rule_card_notes
    from iml_core.config import RunConfig
    from iml_core.evaluation import applicable_baselines, compute_baselines
    from iml_core.runner import create_run, execute_run
    from iml_core.truth import TruthScorer

    csv_path = with_card(tmp_path, TOY_CARD)
    task = load_task(str(csv_path))
    assert task.rule_card["relevant"] == ["feathers"] and task.rule_card["rules"] == TOY_CARD["rules"]
    assert task.source["rules_sha256"] == hashlib.sha256((tmp_path / "toy.rules.json").read_bytes()).hexdigest()
    assert TruthScorer(task).score(rule_card_notes(task)).rule_recall == 1.0
    assert TruthScorer(task).score("Zindle have fur.").rule_recall == 0.0

    config = RunConfig(task=str(csv_path), steps=2, batch_size=8, eval_size=10)
    assert "oracle" in applicable_baselines(config)
    run_id = create_run(store, config)
    execute_run(store, run_id)
    oracle = dict((e.kind, e) for _, e in compute_baselines(store, run_id, ["oracle"]))["oracle"]
    assert oracle.accuracy == 1.0 and oracle.notes_source == "the rule card"


def test_a_preset_s_files_beside_each_other_load_as_a_csv_with_its_rule_card(tmp_path):
    for path in benchmark_files("paper", DATA_DIR):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    from_files = load_task(str(tmp_path / "paper.csv"))
    preset = generate_benchmark("paper")
    assert from_files.rule_card["relevant"] == preset.rule_card["relevant"]
    assert from_files.rule_card["table"] == preset.rule_card["table"]


def test_a_changed_rule_card_is_read_again(tmp_path):
    from iml_core.builders import build_task
    from iml_core.config import RunConfig

    csv_path = tmp_path / "toy.csv"
    csv_path.write_text(TOY)
    config = RunConfig(task=str(csv_path), eval_size=10, batch_size=4)
    assert build_task(config).rule_card is None
    with_card(tmp_path, TOY_CARD)
    first = build_task(config)
    assert first.rule_card["relevant"] == ["feathers"]
    swapped = {"relevant": ["feathers"], "table": [{"when": {"feathers": "yes"}, "class": "Zindle"},
                                                   {"when": {"feathers": "no"}, "class": "Florp"}]}
    (tmp_path / "toy.rules.json").write_text(json.dumps(swapped, indent=1))  # another size: seen even within a tick
    second = build_task(config)
    assert second.rule_card["table"][0]["class"] == "Zindle"
    assert second.source["rules_sha256"] != first.source["rules_sha256"]


@pytest.mark.parametrize("card, problem", [
    ("{not json", "toy.rules.json is not valid JSON (Expecting property name enclosed in double quotes at line 1"),
    ("[1, 2]", "toy.rules.json holds a JSON list, not an object with 'relevant' and 'table'"),
    ({"table": TOY_CARD["table"]}, "toy.rules.json has no 'relevant' list"),
    ({"relevant": ["wings"], "table": []}, "'relevant' of {card} names the column 'wings', which is not a feature "
                                           "column of {csv} (those are 'feathers', 'fur', 'tail'); fix the name"),
    ({"relevant": ["label"], "table": []}, "names the column 'label', which is not a feature column"),
    ({"relevant": ["feathers", "feathers"], "table": []}, "names 'feathers' more than once"),
    ({"relevant": ["feathers"]}, "toy.rules.json has no 'table' list"),
    ({**TOY_CARD, "table": [{"when": {"feathers": "yes"}, "class": "Florp"},
                            {"when": {"feathers": "some"}, "class": "Zindle"}]},
     "row 2 of 'table' of {card} gives feathers = 'some', which no row of {csv} has (its values: 'yes', 'no')"),
    ({**TOY_CARD, "table": [{"when": {"feathers": "yes"}, "class": "Florp"},
                            {"when": {"feathers": "no"}, "class": "Brimlet"}]},
     "row 2 of 'table' of {card} gives the class 'Brimlet', which is not a label in {csv} (its labels: 'Florp', "
     "'Zindle'); fix the class"),
    ({**TOY_CARD, "table": [{"when": {"feathers": "yes"}, "class": "Florp"}]},
     "'table' of {card} has no row for feathers = 'no', which sample 4 of {csv} has; add a row for it"),
    ({**TOY_CARD, "table": [{"when": {"feathers": "yes"}, "class": "Florp"},
                            {"when": {"feathers": "no"}, "class": "Florp"}]},
     "no row of 'table' in {card} gives the class 'Zindle', a label in {csv}"),
    ({**TOY_CARD, "table": [*TOY_CARD["table"], {"when": {"feathers": "yes"}, "class": "Zindle"}]},
     "rows 1 and 3 of 'table' in {card} both give the case feathers = 'yes'; keep one"),
    ({**TOY_CARD, "table": [{"when": {"feathers": "yes", "tail": "long"}, "class": "Florp"}]},
     "row 1 of 'table' of {card} names 'tail', which is not in 'relevant' ('feathers')"),
    ({**TOY_CARD, "relevant": ["feathers", "tail"]}, "row 1 of 'table' of {card} gives no value for 'tail'"),
    ({**TOY_CARD, "classes": ["Florp", "Brimlet"]}, "'classes' of {card} gives the class 'Brimlet'"),
    ({**TOY_CARD, "attributes": {"feathers": ["yes", "maybe"]}}, "'attributes' of {card} gives feathers = 'maybe'"),
    ({**TOY_CARD, "rules": "Florp have feathers."}, "'rules' of {card} is not a list of sentences"),
])
def test_a_rule_card_that_does_not_match_its_csv_is_refused_with_the_mismatch_named(tmp_path, card, problem):
    csv_path = with_card(tmp_path, card)
    with pytest.raises(UserError, match=re.escape(problem.format(card=tmp_path / "toy.rules.json", csv=csv_path))):
        load_task(str(csv_path))
