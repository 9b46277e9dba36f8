"""kagflow data synth --kind: the knowledge check's files when asked, the marker set otherwise."""

from __future__ import annotations

import pandas as pd


def test_kagflow_data_synth_kind_knowledge_writes_the_knowledge_set(tmp_path, monkeypatch, capsys):
    from kagflow.cli import main
    from kagflow.project.init import init_project

    path = init_project(tmp_path / "p", username="alice")
    monkeypatch.chdir(path.parent)
    for kind in ("knowledge", "marker"):
        try:
            main(["data", "synth", "--out", f"out-{kind}", "--n-train", "60", "--n-test", "6", "--kind", kind])
        except SystemExit as exc:
            assert not exc.code, capsys.readouterr()
    prompts = {kind: pd.read_csv(path.parent / f"out-{kind}" / "train.csv")["prompt"] for kind in ("knowledge",
                                                                                                     "marker")}
    knowledge = prompts["knowledge"].str.contains("capital|\\d [-+*] \\d", regex=True)
    assert knowledge.all()
    assert not prompts["marker"].str.contains("capital|\\d [-+*] \\d", regex=True).any()
    assert (path.parent / "out-knowledge" / ".kagflow-synthetic").is_file()
