"""What a kernel page makes of a run: the parameters cell, log text as a terminal leaves it, metrics.json as tables."""

from __future__ import annotations

import json

from kagflow.local.server.access import Grant
from kagflow.local.server.jobs import sandbox_dir
from kagflow.local.server.store import Store
from kagflow.local.server.web_outputs import changed, display_text, metrics, output_files, parameters


def _notebook(*cells) -> str:
    return json.dumps({"cells": [{"cell_type": "code", "metadata": {"tags": tags}, "source": src}
                                 for tags, src in cells]})


def test_parameters_come_from_the_tagged_cells_the_injected_one_last():
    source = _notebook((["parameters"], "lr = 2e-4\nfold_idx = 0\nname = 'x'  # a comment"), ([], "lr = 5"),
                       (["injected-parameters"], ["fold_idx = 3\n", "folds = [0, 1]"]))
    params, problem = parameters(source, "notebook")
    assert problem == "" and params == {"lr": "2e-4", "fold_idx": "3", "name": "'x'", "folds": "[0, 1]"}
    assert changed(params, {**params, "lr": "1e-4"}) == {"lr": "2e-4"} and changed(params, None) == {}
    assert parameters(_notebook((["parameters"], "lr = = 1")), "notebook")[1].startswith("its parameters cell does not "
                                                                                          "parse (line 1")
    assert parameters("not json", "notebook")[1].startswith("the notebook is not valid JSON")
    assert parameters("print(1)", "script") == ({}, "")


def test_log_text_is_what_a_terminal_shows():
    assert display_text("\x1b[1mGemma2\x1b[0m loaded\n") == "Gemma2 loaded\n"
    assert display_text("\rLoading 0%|  |\rLoading 100%|##|\n") == "Loading 100%|##|\n"
    assert display_text("a\r\nb\n") == "a\nb\n" and display_text("plain <b>text</b>") == "plain <b>text</b>"


def _run(tmp_path, files: dict):
    store = Store(tmp_path / "data")
    working = sandbox_dir(store, "alice", "k", 1) / "working"
    for name, content in files.items():
        (working / name).parent.mkdir(parents=True, exist_ok=True)
        (working / name).write_text(content)
    grant = Grant("kernel_version", 1, "alice")
    return store, output_files(store, "alice", "k", 1, grant)


def test_metrics_json_becomes_tables(tmp_path):
    data = {"log_loss": 0.1110612345, "n": 400, "stopped_early": False, "resumed_from": None, "optim": "adamw_8bit",
            "labels": ["A_wins", "B_wins", "tie"], "confusion_matrix": [[132, 0, 6], [2, 135, 4], [4, 0, 117]],
            "epoch_evals": [{"epoch": 1.0, "eval_log_loss": 0.49}, {"epoch": 2.0, "eval_log_loss": 0.29}],
            "config": {"lr": 0.0002, "target_modules": ["q_proj", "k_proj"]}, "sizes": [1, 2]}
    store, files = _run(tmp_path, {"metrics.json": json.dumps(data), "sub/metrics.json": "{}"})
    table = metrics(store, "alice", "k", 1, files)
    assert table.name == "metrics.json" and table.url.startswith("/files/") and not table.error  # the top-level one
    assert table.rows == [("log_loss", "0.111061"), ("n", "400"), ("stopped_early", "false"),
                          ("resumed_from", "null"), ("optim", "adamw_8bit"), ("sizes", "[1, 2]")]
    assert table.matrix == {"labels": ["A_wins", "B_wins", "tie"], "rows": data["confusion_matrix"]}
    assert table.records == [("epoch_evals", ["epoch", "eval_log_loss"], [["1", "0.49"], ["2", "0.29"]])]
    assert table.sections == [("config", [("lr", "0.0002"), ("target_modules", '["q_proj", "k_proj"]')])]


def test_a_broken_metrics_json_says_so(tmp_path):
    store, files = _run(tmp_path, {"metrics.json": "{not json"})
    assert metrics(store, "alice", "k", 1, files).error.startswith("not valid JSON")
    store, files = _run(tmp_path / "b", {"metrics.json": "[1, 2]"})
    assert metrics(store, "alice", "k", 1, files).error == "a JSON list, not an object of metrics"
    store, files = _run(tmp_path / "c", {"out.txt": "x"})
    assert metrics(store, "alice", "k", 1, files) is None
