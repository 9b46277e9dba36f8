"""A pytest plugin (``-p pytest_record``) that writes each test's outcome to ``KAGFLOW_PEER_RESULT`` (JSON).

It also names the running test in ``KAGFLOW_PEER_TEST`` so the recorder in ``shim/sitecustomize.py``
tags each HTTP exchange with it. A test fails if any phase (setup, call, teardown) or any of its
``subTest`` s fails; the failing subtests are listed with it.
"""

import json
import os

TAIL_CHARS = 4000
_tests: dict = {}


def pytest_runtest_logstart(nodeid, location):
    os.environ["KAGFLOW_PEER_TEST"] = nodeid
    _tests.setdefault(nodeid, {"test": nodeid, "outcome": "passed", "message": "", "subtests": []})


def pytest_runtest_logreport(report):
    test = _tests.setdefault(report.nodeid, {"test": report.nodeid, "outcome": "passed", "message": "",
                                             "subtests": []})
    context = getattr(report, "context", None)  # a unittest subTest (pytest >= 9)
    if context is not None:
        test["subtests"].append({"subtest": report._sub_test_description(), "outcome": report.outcome})
        if report.failed:
            test["outcome"] = "failed"
            test["message"] = test["message"] or report.longreprtext[-TAIL_CHARS:]
        return
    if report.failed:
        test["outcome"] = "failed"
        test["message"] = (test["message"] + "\n" if test["message"] else "") + report.longreprtext[-TAIL_CHARS:]
    elif report.skipped and test["outcome"] == "passed":
        test["outcome"] = "skipped"
        test["message"] = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else report.longreprtext


def pytest_collectreport(report):
    if report.failed:  # a module that cannot be imported: its tests never run
        _tests[report.nodeid] = {"test": report.nodeid, "outcome": "failed", "subtests": [],
                                 "message": report.longreprtext[-TAIL_CHARS:]}


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("KAGFLOW_PEER_RESULT")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(list(_tests.values()), f, indent=1)
