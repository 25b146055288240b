import re
from collections import Counter

import pytest

from iml_core.errors import UserError
from iml_core.tasks import (DATA_DIR, PRESETS, benchmark_files, generate_benchmark, load_csv_task, load_task,
                            parse_csv_task, rule_card_text, task_csv_text, write_benchmark)


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
