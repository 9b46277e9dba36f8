"""The task ([data]): how it is built and refused, its swap semantics, labels from a label column, the metrics by
task, the submission formats, synthetic data for each kind, and each kind through the real classifier (tiny model,
CPU): train -> validate -> predict -> submission.csv."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kagflow.classifier.data import load_arena_csv
from kagflow.classifier.infer import InferConfig, predict_with, run_inference
from kagflow.classifier.metrics import evaluate, map_at_k
from kagflow.classifier.submission import check_submission, make_submission
from kagflow.classifier.synth import MARKER, class_markers, write_synthetic_competition
from kagflow.classifier.task import Task
from kagflow.classifier.text import Encoding
from kagflow.classifier.train import TrainConfig, best_eval, run_training

from classifier_fixtures import ALL_LINEAR

pytest_plugins = ["classifier_fixtures"]  # shared session fixtures: the tiny model is trained once

LMSYS = Task.lmsys()
WSDM = Task.from_params({"label_columns": [], "label_column": "winner", "labels": ["model_a", "model_b"],
                         "submission": "label", "metric": "accuracy"})
DETECT = Task.from_params({"text_columns": ["text"], "swap_columns": [], "label_columns": [],
                           "label_column": "generated", "labels": ["0", "1"], "submission": "positive_probability",
                           "metric": "roc_auc"})
FIVE = Task.from_params({"id_column": "essay_id", "train_file": "train_essays.csv", "text_columns": ["title", "body"],
                         "swap_columns": [], "label_columns": [], "label_column": "score",
                         "labels": ["1", "2", "3", "4", "5"], "submission": "label", "metric": "macro_f1"})
MAP3 = Task.from_params({"text_columns": ["question"], "swap_columns": [], "label_columns": [],
                         "label_column": "answer", "labels": ["A", "B", "C", "D"], "submission": "label",
                         "metric": "map_at_3"})


# ---------------------------------------------------------------- building and refusing


def test_the_default_task_is_lmsys_and_its_params_round_trip():
    assert Task() == LMSYS == Task.from_params({}) == Task.from_params(LMSYS.params())
    assert LMSYS.class_names == ("winner_model_a", "winner_model_b", "winner_tie") and LMSYS.n_labels == 3
    assert LMSYS.submission_columns == ("id", "winner_model_a", "winner_model_b", "winner_tie")
    assert LMSYS.text_weights == (0.2, 0.4, 0.4) and LMSYS.direction == "lower"
    assert WSDM == Task.from_params(WSDM.params()) and WSDM.submission_columns == ("id", "winner")
    assert DETECT.submission_columns == ("id", "generated") and DETECT.direction == "higher"
    assert json.loads(json.dumps(FIVE.params())) == FIVE.params()  # what a parameters cell can hold


@pytest.mark.parametrize("params, message", [
    ({"label_colums": ["a", "b"]}, "no key 'label_colums' (did you mean 'label_columns'?)"),
    ({"text_columns": "prompt"}, "text_columns = 'prompt': write a list of strings"),
    ({"metric": 3}, "metric = 3: write a string"),
    ({"metric": "logloss"}, "metric = 'logloss' (did you mean 'log_loss'?)"),
    ({"submission": "probs"}, "submission = 'probs': use one of"),
    ({"label_column": "winner", "labels": ["a", "b"]}, "use one of them"),
    ({"label_columns": [], "label_column": "winner", "labels": ["a"]}, "2 or more distinct values"),
    ({"label_columns": [], "label_column": "winner", "labels": ["a", "a"]}, "2 or more distinct values"),
    ({"label_columns": ["only"]}, "2 or more distinct one-hot columns"),
    ({"label_columns": []}, "no labels: set label_columns"),
    ({"swap_columns": ["response_a", "answer"]}, "swap_columns = ['response_a', 'answer']: name 2 of text_columns"),
    ({"text_columns": ["prompt", "prompt"], "swap_columns": []}, "names a column twice"),
    ({"text_columns": ["label"], "swap_columns": []}, "may not be named 'label'"),
    ({"text_columns": ["winner_tie"], "swap_columns": []}, "is the id or a label column"),
    ({"label_columns": [], "label_column": "y", "labels": ["a", "b", "c"], "submission": "positive_probability"},
     "P(the last label) of a binary task"),
    ({"submission": "label"}, "submission = 'label' writes label_column"),
    ({"label_columns": [], "label_column": "y", "labels": ["a", "b", "c"], "submission": "probabilities",
      "metric": "roc_auc"}, "roc_auc\" needs 2 labels (it has 3)"),
    ({"label_columns": [], "label_column": "y", "labels": ["a", "b"], "submission": "label", "metric": "map_at_3"},
     "map_at_3\" needs 3 or more labels"),
    ({"metric": "map_at_3"}, "and submission = \"label\""),
    ({"label_columns": [], "label_column": "y", "labels": ["a", "b"], "submission": "label", "metric": "log_loss"},
     "log_loss\" scores probabilities"),
    ({"label_columns": [], "label_column": "y", "labels": ["a b", "c", "d"], "submission": "label",
      "metric": "map_at_3"}, "no label may hold one"),
])
def test_an_unusable_data_table_is_refused_naming_the_key_and_the_fix(params, message):
    with pytest.raises(ValueError) as refused:
        Task.from_params(params)
    assert str(refused.value).startswith("[data] ") and message in str(refused.value)


def test_a_data_table_that_is_not_a_table_is_refused():
    with pytest.raises(ValueError, match=r"\[data\] must be a table of keys, not list"):
        Task.from_params(["train.csv"])


# ---------------------------------------------------------------- swap semantics


def test_a_swap_trades_the_first_two_labels_and_keeps_a_tie():
    assert LMSYS.swap_order == [1, 0, 2] and WSDM.swap_order == [1, 0]
    assert LMSYS.swapped_columns() == ("prompt", "response_b", "response_a")
    assert not DETECT.pairwise and LMSYS.pairwise and WSDM.pairwise


@pytest.mark.parametrize("task", [LMSYS, WSDM], ids=["3 labels with a tie", "2 labels"])
def test_swap_tta_maps_the_swapped_pass_back(task):
    """A model that always answers "the first text wins" is, averaged with its swapped pass, undecided between A
    and B; the tie keeps its own probability."""
    frame = pd.DataFrame({"id": ["1"], "prompt": [["p"]], "response_a": [["a"]], "response_b": [["b"]]})

    class Tokenizer:
        bos_token_id = 1

        def __call__(self, texts, **kwargs):
            return {"input_ids": [[ord(c) for c in t] for t in texts]}

    first_wins = [0.7, 0.1, 0.2][:task.n_labels]
    first_wins[1] += 1 - sum(first_wins)
    probs = predict_with(lambda ids: np.array([first_wins] * len(ids)), Tokenizer(), frame, max_length=64,
                         tta=True, task=task)
    assert probs[0, 0] == pytest.approx(probs[0, 1])
    if task.n_labels == 3:
        assert probs[0, 2] == pytest.approx(0.2)


def test_synthetic_pairwise_rows_carry_the_marker_where_the_label_says(tmp_path):
    """WSDM-shaped, plain text: the marker opens response_a for model_a, response_b for model_b; swapping the two
    texts is the other label (no tie class: no row has the marker in both)."""
    paths = write_synthetic_competition(tmp_path, n_train=200, n_test=10, seed=2, task=WSDM, text_format="plain")
    train = pd.read_csv(paths["train"], dtype=str, keep_default_na=False)
    assert list(train.columns) == ["id", "model_a", "model_b", "prompt", "response_a", "response_b", "winner"]
    assert set(train["winner"]) == {"model_a", "model_b"}
    has = lambda col: train[col].str.contains(MARKER)  # noqa: E731
    assert (has("response_a") == (train["winner"] == "model_a")).mean() > 0.97  # a few missing cells
    assert not (has("response_a") & has("response_b")).any()
    assert not train["prompt"].str.startswith('["').any()  # plain text, not JSON turns
    assert train["prompt"].str.startswith("[1] ").any()  # plain text that opens like a list stays text
    data = load_arena_csv(paths["train"], task=WSDM)
    assert not [i for i in data.issues if "invalid JSON" in i.reason]


# ---------------------------------------------------------------- labels from a label column


def test_a_label_column_is_read_as_strings_and_a_bad_label_skips_its_row(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("id,text,generated\n1,some text,1\n2,other text,0\n3,third, 1 \n4,fourth,maybe\n5,fifth,\n")
    data = load_arena_csv(path, task=DETECT)
    assert data.frame["label"].tolist() == [1, 0, 1] and data.skipped_ids == ["4", "5"]
    reasons = [i.reason for i in data.issues]
    assert reasons == ["generated = 'maybe' is not one of labels ['0', '1']; row skipped",
                       "generated is empty; row skipped"]
    assert data.frame["text"].tolist() == [["some text"], ["other text"], ["third"]]


def test_a_label_no_row_has_is_a_warning_in_the_report(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("id,prompt,response_a,response_b,winner\n1,p,a,b,model_a\n2,p,a,b,model_a\n")
    data = load_arena_csv(path, task=WSDM)
    assert data.unseen_labels == ["model_b"]
    assert "warning: no row has the label(s) ['model_b']: the model never learns them" in data.report()


def test_a_train_file_without_the_label_column_names_it(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("id,prompt,response_a,response_b,winner_model_a\n1,p,a,b,1\n")
    with pytest.raises(ValueError, match=r"missing columns \['winner'\].*\(\[data\]\)"):
        load_arena_csv(path, labeled=True, task=WSDM)


# ---------------------------------------------------------------- metrics by task


def test_map_at_3_is_the_mean_reciprocal_rank_within_the_top_3():
    probs = [[0.5, 0.3, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]]
    # truth ranks: 1st, 2nd, 3rd, none of the top 3
    assert map_at_k([0, 2, 2, 0], probs) == pytest.approx((1 + 1 / 2 + 1 / 3 + 0) / 4)


def test_evaluate_reports_the_tasks_metric_and_its_direction():
    labels = [0, 1, 1, 0]
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    scores = evaluate(labels, probs, DETECT)
    assert scores["metric"] == "roc_auc" and scores["metric_direction"] == "higher"
    assert scores["metric_value"] == scores["roc_auc"] == pytest.approx(0.5)
    assert scores["labels"] == ["0", "1"] and np.array(scores["confusion_matrix"]).shape == (2, 2)
    assert evaluate([1, 1], probs[:2], DETECT)["roc_auc"] is None  # one class: undefined, not a number
    five = evaluate([0, 1, 2, 3, 4], np.eye(5), FIVE)
    assert five["metric"] == "macro_f1" and five["metric_value"] == 1.0 and "map_at_3" in five
    assert evaluate([0, 1, 2], np.eye(3), LMSYS)["metric_direction"] == "lower"


def test_the_best_epoch_follows_the_metrics_direction():
    evals = [{"epoch": 1.0, "eval_log_loss": 0.9, "eval_roc_auc": 0.7},
             {"epoch": 2.0, "eval_log_loss": 0.8, "eval_roc_auc": 0.6}]
    assert best_eval(evals, DETECT)["epoch"] == 1.0  # higher AUC is better
    assert best_eval(evals, LMSYS)["epoch"] == 2.0  # lower log loss is better
    assert best_eval([], LMSYS) is None


# ---------------------------------------------------------------- submission formats


def test_each_submission_format_is_written_and_checked():
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
    top3 = make_submission(["q1", "q2"], probs, MAP3)
    assert top3.to_dict("list") == {"id": ["q1", "q2"], "answer": ["D C B", "A B C"]}  # ties: the lower class first
    assert check_submission(top3, ["q1", "q2"], MAP3) == []
    wsdm = make_submission([7, 8], [[0.4, 0.6], [0.9, 0.1]], WSDM)
    assert wsdm.to_dict("list") == {"id": [7, 8], "winner": ["model_b", "model_a"]}
    detect = make_submission([7, 8], [[0.4, 0.6], [0.9, 0.1]], DETECT)
    assert detect.to_dict("list") == {"id": [7, 8], "generated": [0.6, 0.1]}
    five = make_submission(["e1"], [[0.1, 0.1, 0.5, 0.2, 0.1]], FIVE)
    assert list(five.columns) == ["essay_id", "score"] and five["score"].tolist() == ["3"]
    assert check_submission(wsdm.assign(winner=["model_c", "model_a"]), [7, 8], WSDM) == [
        "1 row(s) hold a value that is not one of labels ['model_a', 'model_b']: 'model_c'"]
    assert check_submission(detect.assign(generated=[1.5, 0.0]), [7, 8], DETECT) == ["probabilities outside [0, 1]"]
    assert check_submission(detect, [8, 7], DETECT) == ["ids differ from test.csv's ids or their order"]


@pytest.mark.parametrize("task", [LMSYS, WSDM, DETECT, FIVE, MAP3], ids=["lmsys", "wsdm", "detect", "five", "map3"])
def test_synthetic_files_follow_the_task(task, tmp_path):
    paths = write_synthetic_competition(tmp_path, n_train=60, n_test=12, n_public=4, seed=1, task=task)
    assert paths["train"].name == task.train_file and paths["hidden_test"].name == task.test_file
    test, hidden = pd.read_csv(paths["test"]), pd.read_csv(paths["hidden_test"])
    assert list(test.columns) == [task.id_column, *task.text_columns] and len(test) == 4 and len(hidden) == 12
    for name in ("sample_submission", "hidden_sample", "solution"):
        frame = pd.read_csv(paths[name], dtype=str)
        assert tuple(frame.columns) == task.submission_columns, name
    solution = pd.read_csv(paths["solution"], dtype=str)
    assert solution[task.id_column].tolist() == hidden[task.id_column].astype(str).tolist()
    train = load_arena_csv(paths["train"], task=task)
    assert not train.skipped_ids and not train.unseen_labels
    sample = make_submission(hidden[task.id_column].astype(str), np.full((12, task.n_labels), 1 / task.n_labels), task)
    assert check_submission(sample, hidden[task.id_column].astype(str).tolist(), task) == []


def test_each_class_has_its_own_marker_that_no_other_text_holds(tmp_path):
    markers = class_markers(FIVE)
    assert len(set(markers)) == 5 and MARKER not in markers
    assert class_markers(LMSYS) == (MARKER,) * 3
    paths = write_synthetic_competition(tmp_path, n_train=150, n_test=1, seed=4, task=FIVE)
    frame = load_arena_csv(paths["train"], task=FIVE).frame
    words = frame.apply(lambda r: set(" ".join(r["title"] + r["body"]).split()), axis=1)
    found = [[m for m in markers if m in w] for w in words]
    assert all(len(f) <= 1 for f in found)  # never two classes' markers in one row
    labelled = [(f[0], y) for f, y in zip(found, frame["label"]) if f]
    assert len(labelled) > 140 and all(markers[y] == m for m, y in labelled)


def test_the_default_synthetic_competition_keeps_lmsys_columns(tmp_path):
    paths = write_synthetic_competition(tmp_path, n_train=20, n_test=5, seed=0, task=LMSYS)
    assert list(pd.read_csv(paths["train"]).columns) == ["id", "model_a", "model_b", "prompt", "response_a",
                                                         "response_b", "winner_model_a", "winner_model_b",
                                                         "winner_tie"]
    with pytest.raises(ValueError, match="text_format = 'json'"):
        write_synthetic_competition(tmp_path, task=LMSYS, text_format="json")


# ---------------------------------------------------------------- each kind through the real classifier

TINY = dict(max_length=48, n_splits=4, per_device_train_batch_size=10, gradient_accumulation_steps=1, n_epochs=1,
            freeze_layers=0, target_modules=ALL_LINEAR[:3], gradient_checkpointing=False, eval_strategy="epoch",
            optim_type="adamw_torch", warmup_steps=0, logging_steps=5, save_steps=1000, lr=1e-3)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("task, text_format", [(LMSYS, "turns"), (WSDM, "plain"), (DETECT, "plain"),
                                               (FIVE, "turns"), (MAP3, "plain")],
                         ids=["lmsys", "wsdm", "detect", "five", "map3"])
def test_each_task_trains_validates_and_writes_its_submission(task, text_format, tmp_path, tiny_checkpoint):
    paths = write_synthetic_competition(tmp_path / "data", n_train=40, n_test=6, seed=1, task=task,
                                        text_format=text_format)
    metrics = run_training(TrainConfig(**TINY), train_csv=paths["train"], base=tiny_checkpoint,
                           adapter_dir=tmp_path / "adapter", checkpoint_dir=tmp_path / "ckpt",
                           report_dir=tmp_path / "report", task=task)
    assert metrics["metric"] == task.metric and metrics["metric_direction"] == task.direction
    assert metrics["metric_value"] == metrics[task.metric] and metrics["labels"] == list(task.class_names)
    assert np.array(metrics["confusion_matrix"]).shape == (task.n_labels, task.n_labels)
    assert metrics["data"] == task.params() and metrics["n"] == 10
    assert f"eval_{task.metric}" in metrics["epoch_evals"][0] and metrics["best_eval"]["epoch"] == 1.0
    val = pd.read_csv(tmp_path / "report" / "val_predictions.csv")
    assert list(val.columns) == ["id", "label", *task.probability_columns]
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS"
    assert Encoding.load(tmp_path / "adapter") == Encoding.of(TrainConfig(**TINY))  # what inference reads back

    result = run_inference(InferConfig(max_length=48, batch_size=8, tta=True), test_csv=paths["test"],
                           base=tiny_checkpoint, adapter=tmp_path / "adapter", output_path=tmp_path / "submission.csv",
                           task=task)
    submission = pd.read_csv(result["path"], dtype=str, keep_default_na=False)
    test_ids = pd.read_csv(paths["test"], dtype=str)[task.id_column].tolist()
    assert tuple(submission.columns) == task.submission_columns and submission[task.id_column].tolist() == test_ids
    assert tuple(pd.read_csv(paths["sample_submission"]).columns) == task.submission_columns
    values = submission[list(task.submission_columns[1:])]
    if task.submission == "label":
        top = 3 if task.metric == "map_at_3" else 1
        assert all(len(v.split()) == top and set(v.split()) <= set(task.labels) for v in values.iloc[:, 0])
    else:
        numbers = values.to_numpy(dtype=float)
        assert ((numbers >= 0) & (numbers <= 1)).all()
        if task.submission == "probabilities":
            np.testing.assert_allclose(numbers.sum(axis=1), 1, atol=1e-6)


def test_each_ddp_process_gets_the_task(monkeypatch, tmp_path):
    """train_on_all_gpus writes the task into the launch parameters; the module entry point that each DDP process
    runs rebuilds it (without it, every process would train LMSYS's 3-label head on WSDM's data)."""
    from kagflow.classifier import train as train_mod

    launched, trained = [], []
    monkeypatch.setattr(train_mod.subprocess, "run", lambda command, **kwargs: launched.append(command))
    monkeypatch.setattr(train_mod, "run_training", lambda cfg, **kwargs: trained.append(kwargs["task"]))
    (tmp_path / "metrics.json").write_text("{}")
    train_mod.train_on_all_gpus(TrainConfig(), train_csv="t.csv", base="b", adapter_dir="a", checkpoint_dir="c",
                                report_dir=tmp_path, n_gpus=2, task=WSDM)
    params = launched[0][launched[0].index("--params") + 1]
    train_mod.main(["--params", params])
    assert trained == [WSDM]
