"""[data]: the competition's task in kagflow.toml, its rules refused naming file, key and fix; init's own names."""

from __future__ import annotations

import pytest

from kagflow.errors import ConfigError
from kagflow.project.config import DataConfig, load_config
from kagflow.project.init import init_project

WSDM = """
[data]
text_columns = ["prompt", "response_a", "response_b"]
swap_columns = ["response_a", "response_b"]
label_column = "winner"
labels = ["model_a", "model_b"]
submission = "label"
metric = "accuracy"
"""


def _with_data(project, table: str):
    text = project.read_text()
    start = text.index("[data]")
    end = text.index("\n[", start + 1)
    project.write_text(text[:start] + table.strip() + "\n" + text[end:])
    return project


def test_the_default_is_lmsys_and_reaches_the_notebooks_whole(project):
    cfg = load_config(project)
    assert cfg.data == DataConfig()
    assert cfg.data.submission_columns == ("id", "winner_model_a", "winner_model_b", "winner_tie")
    assert cfg.data.params()["label_columns"] == ["winner_model_a", "winner_model_b", "winner_tie"]


def test_a_wsdm_table_naming_label_column_drops_the_default_one_hot_columns(project):
    data = load_config(_with_data(project, WSDM)).data
    assert (data.label_columns, data.label_column, data.labels) == ((), "winner", ("model_a", "model_b"))
    assert data.submission_columns == ("id", "winner") and data.facts.higher_is_better
    single = load_config(_with_data(project, '[data]\ntext_columns = ["text"]\nlabel_column = "generated"\n'
                                             'labels = ["0", "1"]\nsubmission = "positive_probability"\n'
                                             'metric = "roc_auc"')).data
    assert single.swap_columns == () and single.submission_columns == ("id", "generated")


@pytest.mark.parametrize("table, key, pieces", [
    ('[data]\nlabel_column = "winner"\nlabels = ["a", "b"]\nlabel_columns = ["x", "y"]', "label_column",
     ["exactly one of label_columns and label_column"]),
    ('[data]\nlabel_column = "winner"\nlabels = ["a"]\nlabel_columns = []', "labels", ["2 or more distinct"]),
    ('[data]\nmetric = "auc"', "metric", ["did you mean 'roc_auc'"]),
    ('[data]\nmetric = "roc_auc"', "metric", ["ROC AUC is for 2 labels; there are 3"]),
    ('[data]\nmetric = "accuracy"', "submission", ["accuracy scores labels", 'submission = "label"']),
    ('[data]\nlabel_column = "winner"\nlabels = ["a", "b"]\nmetric = "map_at_3"\nsubmission = "label"', "metric",
     ["MAP@3 needs 3 or more labels"]),
    ('[data]\nsubmission = "positive_probability"', "submission", ["writes label_column, which is not set"]),
    ('[data]\nsubmission = "probability"', "submission", ['did you mean submission = "probabilities"']),
    ('[data]\nswap_columns = ["response_a", "answer"]', "swap_columns", ["must be 2 of text_columns"]),
])
def test_a_bad_data_table_is_one_message_naming_file_key_and_fix(project, table, key, pieces):
    with pytest.raises(ConfigError) as err:
        load_config(_with_data(project, table))
    text = f"{err.value.message} | {err.value.context} | {err.value.hint}"
    assert err.value.message.startswith(f"kagflow.toml: [data] {key} = "), text
    assert f"key {key}" in err.value.context and err.value.hint, text
    for piece in pieces:
        assert piece in text, (piece, text)


def test_two_projects_in_two_folders_never_share_a_kernel_or_model(tmp_path):
    """The bug: init changed only the competition line, so a second project's push became a version of the first
    project's kernel and adapter."""
    a = load_config(init_project(tmp_path / "a", username="alice"))
    b = load_config(init_project(tmp_path / "b", username="alice", competition="wsdm-cup-multilingual-chatbot-arena"))
    c = load_config(init_project(tmp_path / "c", username="alice", competition="llm-detect-ai-generated-text"))
    for one, other in ((a, b), (a, c), (b, c)):
        for name in ("train", "infer"):
            assert one.kernel_handle(name) != other.kernel_handle(name)
        assert one.model_handle("adapter_model") != other.model_handle("adapter_model")
        assert one.wheels_handle() != other.wheels_handle()
    assert str(b.kernel_handle("train")) == "alice/wsdm-cup-multilingual-chatbot-arena-train"
