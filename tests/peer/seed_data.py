"""What Kaggle's public suites assume exists on Kaggle, as data: the seed scripts create it on the local server.

Every name below is one the suites use (kaggle-cli ``tests/test_commands.sh``, ``tests/backend/
backend_tests.py``, ``tests/integration/``; kagglehub ``integration_tests/``). The contents are small
stand-ins with the file names, columns and layout the suites check (the real files are not needed:
no test reads past a header). ``DEVELOPER`` is the kaggle-cli suites' own account
(``$KAGGLE_DEVELOPER``); ``HUB_USER`` is kagglehub's (``integrationtester``). Standard library only:
the competition seed runs in kagflow's environment, the rest in the official clients' one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEVELOPER = os.environ.get("KAGGLE_DEVELOPER") or "kagflowdev"
HUB_USER = "integrationtester"
KEY = "local-peer-key"  # the local server runs without --users: any key is accepted


def _csv(header: str, rows: int = 3) -> str:
    cols = header.split(",")
    return header + "\n" + "".join(",".join(str(i + j) for j in range(len(cols))) + "\n" for i in range(1, rows + 1))


@dataclass(frozen=True)
class Competition:
    slug: str
    title: str
    files: dict           # public files: name -> text
    solution: str         # the hidden solution.csv: the id, then the columns `metric` scores (the sample's columns)
    accepted_by: tuple    # users who accepted the rules (downloads answer 403 for the others)
    metric: str = "log_loss"   # a name of kagflow/local/server/metrics.py (binary log loss: one 0/1 column)
    category: str = "featured"  # Kaggle's category (kaggle competitions list --category)


def _rows(header: str, ids: range, values: str = "") -> str:
    """A file of one row per id (the real test sets' ids: a submission is checked against them)."""
    width = header.count(",")
    return header + "\n" + "".join(f"{i},{values or ','.join(['1'] * width)}\n" for i in ids)


TITANIC = "PassengerId,Survived,Pclass,Name,Sex,Age,SibSp,Parch,Ticket,Fare,Cabin,Embarked"
TITANIC_TEST = range(892, 1310)   # 418 rows
HOUSE = "Id,MSSubClass,MSZoning,LotArea,OverallQual,YearBuilt,SalePrice"
HOUSE_TEST = range(1461, 2920)    # 1459 rows, the ids of kaggle-cli's tests/backend/sample_submission.csv
COMPETITIONS = (
    Competition("titanic", "Titanic - Machine Learning from Disaster",
                {"train.csv": _csv(TITANIC), "test.csv": _rows(TITANIC.replace("Survived,", ""), TITANIC_TEST),
                 "gender_submission.csv": _rows("PassengerId,Survived", TITANIC_TEST, "0")},
                _rows("PassengerId,Survived", TITANIC_TEST, "0"), (DEVELOPER, HUB_USER),
                category="gettingStarted"),  # Kaggle scores accuracy; binary log loss here
    Competition("house-prices-advanced-regression-techniques", "House Prices - Advanced Regression Techniques",
                {"train.csv": _csv(HOUSE), "test.csv": _rows(HOUSE.replace(",SalePrice", ""), HOUSE_TEST),
                 "data_description.txt": "MSSubClass: Identifies the type of dwelling involved in the sale.\n",
                 "sample_submission.csv": _rows("Id,SalePrice", HOUSE_TEST, "180921.19")},
                _rows("Id,SalePrice", HOUSE_TEST, "180000"), (DEVELOPER, HUB_USER),
                metric="rmse", category="gettingStarted"),  # Kaggle: RMSE of the log prices
    Competition("ieee-fraud-detection", "IEEE-CIS Fraud Detection",
                {"sample_submission.csv": "TransactionID,isFraud\n3663549,0.5\n3663550,0.5\n",
                 "test_identity.csv": _csv("TransactionID,id_01,id_02,DeviceType"),
                 "test_transaction.csv": _csv("TransactionID,TransactionDT,TransactionAmt,ProductCD"),
                 "train_identity.csv": _csv("TransactionID,id_01,id_02,DeviceType"),
                 "train_transaction.csv": _csv("TransactionID,isFraud,TransactionDT,TransactionAmt,ProductCD")},
                "TransactionID,isFraud\n3663549,0\n3663550,1\n", (HUB_USER,)),  # Kaggle scores ROC AUC
    Competition("jane-street-market-prediction", "Jane Street Market Prediction",
                {"train.csv": _csv("date,weight,resp,feature_0"), "example_test.csv": _csv("date,weight,feature_0"),
                 "example_sample_submission.csv": "ts_id,action\n0,0\n1,1\n"},
                "ts_id,action\n0,0\n1,1\n", ()),  # kagglehub: its bot has NOT accepted these (Kaggle: a utility score)
)


@dataclass(frozen=True)
class Dataset:
    ref: str              # owner/slug
    versions: tuple       # one {name: text} per version, oldest first
    private: bool = False
    license: str = "CC0-1.0"


DL_COURSE = ("abalone", "candy", "cereal", "concrete", "diamonds", "forestfires", "fuel", "hotel", "housing", "ion",
             "red-wine", "songs", "spotify")
_DL_FILES = {f"{name}.csv": _csv("carat,cut,color,clarity,depth,table,price,x,y,z" if name == "diamonds"
                                 else "a,b,c") for name in DL_COURSE}
DATASETS = (
    Dataset("ryanholbrook/dl-course-data",  # kagglehub asks for version 5 and the latest
            tuple({**_DL_FILES, "README.md": f"version {n}\n"} if n < 5 else _DL_FILES for n in range(1, 6))),
    Dataset(f"{HUB_USER}/kagglehub-test-private-dataset", ({"private.txt": "private\n"},), private=True),
    Dataset("dansbecker/home-data-for-ml-course", ({"train.csv": _csv(HOUSE), "test.csv": _csv(HOUSE[:-10])},)),
    Dataset("oktayrdeki/traffic-accidents", ({"traffic_accidents.csv": _csv("crash_date,crash_type,injuries")},)),
    Dataset("kerneler/brazilian-bird-observation-metadata-from-wikiaves",
            ({f"species_{i}.csv": _csv("species_id,name,observations") for i in range(1, 10)},)),
    Dataset("willianoliveiragibin/pixar-films", ({"pixar_films.csv": _csv("film,release_date,run_time")},)),
    Dataset("goefft/public-datasets-with-file-types-and-columns",
            ({"dataset_results.csv": _csv("ref,title,size,file_types"),
              "column_results.csv": _csv("ref,file,column,type")},), license="other"),
)


@dataclass(frozen=True)
class Instance:
    framework: str
    slug: str
    versions: tuple       # one {path: text} per version (paths may have folders)


@dataclass(frozen=True)
class Model:
    ref: str              # owner/slug
    title: str
    instances: tuple
    private: bool = False


_BERT = {"assets/tokenizer/vocabulary.txt": "[PAD]\n[UNK]\n", "config.json": "{}\n", "metadata.json": "{}\n",
         "model.weights.h5": "weights\n", "tokenizer.json": "{}\n"}
MODELS = (
    Model("keras/bert", "BERT", (Instance("keras", "bert_tiny_en_uncased", (_BERT, _BERT)),)),
    Model("google/gemma", "Gemma", (Instance("pytorch", "7b", ({"config.json": "{}\n", "model.bin": "v1\n"},
                                                              {"config.json": "{}\n", "model.bin": "v2\n",
                                                               "tokenizer.model": "tok\n",
                                                               "tokenizer_config.json": "{}\n"})),)),
    Model(f"{HUB_USER}/test-private-model", "Test private model",
          (Instance("pyTorch", "b0", ({"efficientnet-b0.pth": "weights\n"},)),
           Instance("keras", "many-files-with-subdirectories",
                    ({**{f"assets/{i}.txt": f"{i}\n" for i in range(1, 26)}, "config.json": "{}\n",
                      "model.keras": "model\n"},))),
          private=True),
)


@dataclass(frozen=True)
class Kernel:
    ref: str              # owner/slug
    versions: tuple       # one {output path: text} per version: what the run writes to /kaggle/working
    kernel_type: str = "script"
    private: bool = False
    keywords: tuple = ()
    dataset_sources: tuple = ()
    competition_sources: tuple = ()


def _package(modules: dict, extra: str = "") -> dict:
    """A Kaggle Package's notebook output: ``package/__init__.py`` (format 0.1.0), the datasources it pins
    (``kagglehub_requirements.yaml``, kagglehub's tracker format; none here) and its modules."""
    init = ('__package_version__ = "0.1.0"\n' + extra +
            "import sys\nfrom kagglehub.packages import _finalize_package_import\n"
            "__all__ = _finalize_package_import(sys.modules[__name__])\n")
    return {"package/__init__.py": init, "package/kagglehub_requirements.yaml": REQUIREMENTS,
            **{f"package/{name}.py": text for name, text in modules.items()}}


REQUIREMENTS = "format_version: 0.1.0\ndatasources: []\n"
_FOO = '__all__ = ["foo"]\n\n\ndef foo():\n    return "bar"\n'
_MODEL = ('__all__ = ["Model"]\n\n\nclass Model:\n    def foo(self):\n        return "this is a test package"\n')
_JOKES = '__all__ = ["get_joke"]\n\n\ndef get_joke():\n    import pyjokes\n    return pyjokes.get_joke()\n'
KERNELS = (
    Kernel("kerneler/sqlite-global-default", ({"global_default.sqlite": "SQLite format 3\n"},)),
    Kernel(f"{DEVELOPER}/exercise-as-with", ({"results.csv": "a,b\n1,2\n"},), kernel_type="notebook"),
    Kernel(f"{DEVELOPER}/exercise-lists", ({"lists.csv": "a\n1\n"},), kernel_type="notebook"),
    Kernel("stevemessick/kaggle-api-sample", ({"out.csv": "a\n1\n"},)),
    Kernel("alexisbcook/titanic-tutorial", ({"my_submission.csv": "PassengerId,Survived\n892,0\n"},
                                            {"submission.csv": "PassengerId,Survived\n892,0\n"}),
           competition_sources=("titanic",)),
    Kernel(f"{HUB_USER}/titanic-tutorial", ({"submission.csv": "PassengerId,Survived\n892,0\n"},)),
    Kernel(f"{HUB_USER}/private-titanic-tutorial", ({"submission-01.csv": "PassengerId,Survived\n892,0\n",
                                                     "submission-02.csv": "PassengerId,Survived\n892,1\n"},),
           private=True),
    Kernel(f"{HUB_USER}/titanic-tutorial-many-output-files",
           ({f"submission-{i:02d}.csv": "PassengerId,Survived\n892,0\n" for i in range(1, 31)},)),
    Kernel("dster/package-test", (_package({"foo": _FOO}), _package({"model": _MODEL}))),
    Kernel(f"{HUB_USER}/kagglehub-test-private-package", (_package({"foo": _FOO}),), private=True),
    Kernel("packagemanager/joke-teller-dependencies",
           ({"install_requirements.sh": "#!/bin/bash\nset -e\npython -m pip install --quiet pyjokes\n"},)),
    Kernel("dster/joke-teller", (_package({"jokes": _JOKES},
                                          '__dependency_manager_notebook__ = "packagemanager/joke-teller-dependencies"\n'),)),
    Kernel(f"{HUB_USER}/utility-script", ({"utility_script.py": "def hello():\n    return 'hello'\n"},),
           keywords=("utility script",)),
    Kernel(f"{HUB_USER}/private-utility-script", ({"private_utility_script.py": "def hello():\n    return 'hi'\n"},),
           private=True, keywords=("utility script",)),
)
