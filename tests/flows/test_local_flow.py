"""The whole Kaggle workflow against the local server, through the official kaggle library and CLI."""

from __future__ import annotations

import json
import math
import tarfile
import zipfile

from kagflow.hub.client import EndpointKaggleApi
from kagflow.hub.official_cli import run_official_cli as _run_official_cli

from local_fixtures import *  # noqa: F401,F403
from local_fixtures import (
    COMPETITION,
    USER,
    wait_kernel,
    wait_submission,
    write_dataset,
    write_kernel,
    write_model_folders,
)


def run_official_cli(args, endpoint):
    """The official CLI's own entry point, unchanged but for kagflow's endpoint seam."""
    return _run_official_cli(EndpointKaggleApi(endpoint), args, capture=True)


def test_dataset_model_kernel_submit_flow(api, server, tmp_path):
    # datasets: create, then a new version
    ds = write_dataset(tmp_path / "ds", "arena-subset", {"rows.csv": "a,b\n1,2\n"})
    created = api.dataset_create_new(str(ds), quiet=True)
    assert created.status == "ok" and created.ref == f"{USER}/arena-subset"
    assert api.dataset_status(f"{USER}/arena-subset") == "ready"
    (ds / "rows.csv").write_text("a,b\n1,2\n3,4\n")
    assert api.dataset_create_version(str(ds), "more rows", quiet=True).status == "ok"
    assert json.loads(api.dataset_status(f"{USER}/arena-subset", format="json")) == {
        "status": "ready", "current_version_number": 2}
    files = api.dataset_list_files(f"{USER}/arena-subset").dataset_files
    assert [(f.name, f.total_bytes) for f in files] == [("rows.csv", 12)]
    api.dataset_download_files(f"{USER}/arena-subset", path=str(tmp_path / "dl"), unzip=True)
    assert (tmp_path / "dl" / "rows.csv").read_text() == "a,b\n1,2\n3,4\n"

    # models: model, instance (version 1), instance version 2
    folders = write_model_folders(tmp_path / "m")
    assert api.model_create_new(str(folders / "model")).ref == f"{USER}/tiny-gemma"
    inst = api.model_instance_create(str(folders / "instance"), quiet=True)
    assert inst.ref == f"{USER}/tiny-gemma/transformers/lora"
    ver = api.model_instance_version_create(f"{USER}/tiny-gemma/transformers/lora", str(folders / "v2"),
                                            version_notes="r8", quiet=True)
    assert ver.ref == f"{USER}/tiny-gemma/transformers/lora/2"
    assert api.model_instance_get(f"{USER}/tiny-gemma/transformers/lora").version_number == 2
    versions = api.model_instance_versions_list(f"{USER}/tiny-gemma/transformers/lora").version_list.versions
    assert [v.version_number for v in versions] == [2, 1]
    tgz = api.model_instance_version_download(f"{USER}/tiny-gemma/transformers/lora/1", path=str(tmp_path / "md"))
    with tarfile.open(tgz) as t:
        assert t.extractfile("adapter_config.json").read() == b'{"r": 16}'

    # kernel: reads the dataset (classic and new mounts), the model and the competition; writes a submission
    kernel = write_kernel(
        tmp_path / "kernel", "arena-infer",
        "import os, json, pandas as pd\n"
        "root = os.environ['KAGFLOW_INPUT_ROOT']\n"
        "assert os.getcwd() == os.environ['KAGFLOW_WORKING_ROOT']\n"
        "assert os.environ['KAGGLE_KERNEL_RUN_TYPE'] == 'Batch'\n"
        "rows = pd.read_csv(f'{root}/datasets/alice/arena-subset/rows.csv')\n"
        "assert open(f'{root}/arena-subset/rows.csv').read() == "
        "open(f'{root}/datasets/alice/arena-subset/rows.csv').read()\n"
        "cfg = json.load(open(f'{root}/models/alice/tiny-gemma/transformers/lora/2/adapter_config.json'))\n"
        "assert json.load(open(f'{root}/tiny-gemma/transformers/lora/2/adapter_config.json')) == cfg\n"
        "print('rows', len(rows), 'r', cfg['r'])",
        "test = pd.read_csv(f'{root}/competitions/" + COMPETITION + "/test.csv')\n"
        "assert not os.path.exists(f'{root}/competitions/" + COMPETITION + "/solution.csv')\n"
        "pd.DataFrame({'id': test.id, 'winner_model_a': 0.5, 'winner_model_b': 0.25, 'winner_tie': 0.25})"
        ".to_csv('submission.csv', index=False)\n"
        "os.makedirs('extra', exist_ok=True); open('extra/note.txt', 'w').write('ok')",
        dataset_sources=[f"{USER}/arena-subset"], competition_sources=[COMPETITION],
        model_sources=[f"{USER}/tiny-gemma/Transformers/lora/2"])
    pushed = api.kernels_push(str(kernel))
    assert pushed.version_number == 1 and not pushed.invalid_dataset_sources
    status = wait_kernel(api, f"{USER}/arena-infer")
    assert status.status.name == "COMPLETE", status.failure_message
    files, _ = api.kernels_output(f"{USER}/arena-infer", str(tmp_path / "out"))
    names = sorted(p.split("/out/")[1] for p in files)
    assert names == ["arena-infer.log", "extra/note.txt", "submission.csv"]
    log = json.loads((tmp_path / "out" / "arena-infer.log").read_text())
    assert "this run's limits" in log[0]["data"]  # the runner's first line; the notebook's output follows
    log = log[1:]
    assert {"stream_name": "stdout", "data": "rows 2 r 8\n"} == {k: log[0][k] for k in ("stream_name", "data")}
    assert isinstance(log[0]["time"], float)

    # code submission of kernel version 1, scored by log loss against the hidden solution
    sub = api.competition_submit_code("submission.csv", "first try", COMPETITION, f"{USER}/arena-infer", 1,
                                      quiet=True)
    scored = wait_submission(api, COMPETITION, sub.ref)
    assert scored.status.name == "COMPLETE", scored.error_description
    expected = (-math.log(0.5) - math.log(0.25) - math.log(0.25)) / 3
    assert abs(float(scored.public_score) - expected) < 1e-4

    # pull returns the pushed source
    pulled = api.kernels_pull(f"{USER}/arena-infer", str(tmp_path / "pull"), metadata=True)
    meta = json.loads((tmp_path / "pull" / "kernel-metadata.json").read_text())
    assert pulled and meta["dataset_sources"] == [f"{USER}/arena-subset"] and meta["enable_internet"] is False


def test_failing_kernel_ends_in_error_with_traceback(api, tmp_path):
    kernel = write_kernel(tmp_path / "k", "will-fail", "print('starting')", "raise KeyError('missing column')",
                          competition_sources=[COMPETITION])
    api.kernels_push(str(kernel))
    status = wait_kernel(api, f"{USER}/will-fail")
    assert status.status.name == "ERROR"
    assert status.failure_message == "KeyError: 'missing column'"
    api.kernels_output(f"{USER}/will-fail", str(tmp_path / "out"))
    log = json.loads((tmp_path / "out" / "will-fail.log").read_text())[1:]  # past the runner's limits line
    assert log[0]["data"] == "starting\n"
    assert log[-1]["stream_name"] == "stderr" and "Traceback" in log[-1]["data"]
    assert "KeyError: 'missing column'" in log[-1]["data"]
    # a submission of a failed run is refused with the reason
    sub = api.competition_submit_code("submission.csv", "", COMPETITION, f"{USER}/will-fail", 1, quiet=True)
    scored = wait_submission(api, COMPETITION, sub.ref)
    assert scored.status.name == "ERROR" and "KeyError" in scored.error_description


def test_official_cli_entry_point(server, tmp_path):
    ds = write_dataset(tmp_path / "ds", "cli-dataset", {"x.txt": "hello"})
    assert run_official_cli(["datasets", "create", "-p", str(ds), "-q"], server.url).exit_code == 0
    assert f"{USER}/cli-dataset" in run_official_cli(["datasets", "list", "--mine"], server.url).stdout
    kernel = write_kernel(tmp_path / "k", "cli-kernel",
                          "import os\nprint(sorted(os.listdir(os.environ['KAGFLOW_INPUT_ROOT'])))\n"
                          "open('submission.csv','w').write('id,winner_model_a,winner_model_b,winner_tie\\n'"
                          " + ''.join(f'{i},0.2,0.3,0.5\\n' for i in (1,2,3)))",
                          dataset_sources=[f"{USER}/cli-dataset"], competition_sources=[COMPETITION])
    pushed = run_official_cli(["kernels", "push", "-p", str(kernel)], server.url)
    assert pushed.exit_code == 0 and "version 1" in pushed.stdout.lower()
    from kagflow.hub.client import build_api
    wait_kernel(build_api(server.url), f"{USER}/cli-kernel")
    status = run_official_cli(["kernels", "status", f"{USER}/cli-kernel"], server.url)
    assert "COMPLETE" in status.stdout
    out = run_official_cli(["kernels", "output", f"{USER}/cli-kernel", "-p", str(tmp_path / "out")], server.url)
    assert out.exit_code == 0 and (tmp_path / "out" / "submission.csv").exists()
    assert "cli-dataset" in (tmp_path / "out" / "cli-kernel.log").read_text()
    submit = run_official_cli(["competitions", "submit", COMPETITION, "-k", f"{USER}/cli-kernel", "-v", "1",
                               "-f", "submission.csv", "-m", "from the cli"], server.url)
    assert submit.exit_code == 0, submit.stderr
    wait_submission(build_api(server.url), COMPETITION, 1)
    board = run_official_cli(["competitions", "leaderboard", COMPETITION, "-s", "--csv"], server.url)
    assert board.exit_code == 0 and f"{USER}," in board.stdout, board
    subs = run_official_cli(["competitions", "submissions", COMPETITION, "--csv"], server.url)
    assert "from the cli" in subs.stdout and "COMPLETE" in subs.stdout
    files = run_official_cli(["competitions", "files", COMPETITION, "--csv"], server.url)
    assert "test.csv" in files.stdout and "solution.csv" not in files.stdout
    missing = run_official_cli(["kernels", "status", f"{USER}/no-such-kernel"], server.url)
    assert missing.exit_code == 1 and "not found" in missing.stderr
    zipped = run_official_cli(["competitions", "download", COMPETITION, "-p", str(tmp_path / "c")], server.url)
    assert zipped.exit_code == 0
    with zipfile.ZipFile(tmp_path / "c" / f"{COMPETITION}.zip") as z:
        assert sorted(z.namelist()) == ["sample_submission.csv", "test.csv", "train.csv"]


def test_file_submission_and_log_stream(server, api, tmp_path):
    from kagflow.local.server.competition import accept_rules, install_competition

    from local_fixtures import write_competition

    install_competition(server.data_dir, "file-competition", write_competition(tmp_path / "fc"), kernels_only=False)
    accept_rules(server.data_dir, "file-competition", USER)
    sub = tmp_path / "submission.csv"
    sub.write_text("id,winner_model_a,winner_model_b,winner_tie\n1,0.5,0.25,0.25\n2,0.25,0.5,0.25\n3,0.2,0.2,0.6\n")
    refused = run_official_cli(["competitions", "submit", COMPETITION, "-f", str(sub), "-m", "x"], server.url)
    assert refused.exit_code == 1 and "only accepts notebook submissions" in refused.stderr
    done = run_official_cli(["competitions", "submit", "file-competition", "-f", str(sub), "-m", "file upload"],
                            server.url)
    assert done.exit_code == 0, done.stderr
    scored = wait_submission(api, "file-competition", 1)
    assert scored.status.name == "COMPLETE"
    assert abs(float(scored.public_score) - (-(2 * math.log(0.5) + math.log(0.6)) / 3)) < 1e-4

    kernel = write_kernel(tmp_path / "k", "chatty-kernel", "import time\nfor i in range(3):\n"
                          "    print('tick', i, flush=True); time.sleep(0.3)")
    api.kernels_push(str(kernel))
    follow = run_official_cli(["kernels", "logs", f"{USER}/chatty-kernel", "--follow"], server.url)
    assert follow.exit_code == 0 and follow.stdout.count("tick") == 3, follow
    assert wait_kernel(api, f"{USER}/chatty-kernel").status.name == "COMPLETE"
    once = run_official_cli(["kernels", "logs", f"{USER}/chatty-kernel"], server.url)
    assert json.loads(once.stdout)[3]["data"] == "tick 2\n"  # after the runner's limits line


def test_script_kernel(api, tmp_path):
    folder = tmp_path / "script"
    folder.mkdir()
    (folder / "run.py").write_text("print('script ran')\nopen('out.txt', 'w').write('1')\n")
    (folder / "kernel-metadata.json").write_text(json.dumps(
        {"id": f"{USER}/script-kernel", "title": "Script kernel", "code_file": "run.py", "language": "python",
         "kernel_type": "script", "enable_internet": False}))
    api.kernels_push(str(folder))
    assert wait_kernel(api, f"{USER}/script-kernel").status.name == "COMPLETE"
    files, _ = api.kernels_output(f"{USER}/script-kernel", str(tmp_path / "out"))
    assert (tmp_path / "out" / "out.txt").read_text() == "1"
    log = json.loads((tmp_path / "out" / "script-kernel.log").read_text())
    assert "this run's limits" in log[0]["data"]
    assert [e["data"] for e in log[1:]] == ["script ran\n"]  # no echoed expression values, as in a script
