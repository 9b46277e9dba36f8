"""Which data the project's competition runs on, on the local Kaggle: the user's, or, asked for, synthetic ones.

Never substituted silently. The synthetic competition (``kagflow.classifier.synth``, in ``[data]``'s schema, with a
learnable signal) is made only for the default competition, or for another one when the user asked for it with
``kagflow data synth`` (which marks the folder it writes). A competition the local Kaggle already hosts keeps its
files; any other competition without hosted files stops with one error saying how to host them. Whether the data
were synthetic is kept with the hosted competition, and every report says it.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Optional

from kagflow.classifier.synth import KINDS, TEXT_FORMATS  # noqa: F401  (the CLI offers them)
from kagflow.errors import DataError
from kagflow.project.config import COMPETITION, Config, DataConfig
from kagflow.rules import metrics as metric_rules

PUBLIC_TEST_ROWS = 3  # like LMSYS: test.csv shows 3 rows; a submission is re-run on the whole hidden test set
SYNTHETIC_MARK = ".kagflow-synthetic"  # in a folder kagflow data synth wrote (hidden: never hosted)


@dataclass(frozen=True)
class CompetitionData:
    """The files a local run of the project's competition reads."""

    slug: str
    files: dict  # public file name -> its path (what a kernel mounts; never the solution)
    synthetic: bool

    @property
    def note(self) -> str:
        """What a report says of the data ("" for the competition's own)."""
        return (f"SYNTHETIC data: kagflow's generated stand-in for {self.slug}, not the competition's own files; its "
                "scores say nothing about the real competition" if self.synthetic else "")


def write_synthetic(config: Config, out: Path, *, n_train: int, n_test: int, seed: int,
                    n_public: Optional[int] = None, text_format: str = "turns", kind: str = "marker") -> dict:
    """The synthetic competition's files, in ``[data]``'s schema, into ``out`` (marked as synthetic); their paths
    by name. ``text_format``: each text cell a JSON list of turns ("turns", LMSYS) or plain text ("plain", WSDM).
    ``kind``: "marker" (a marker word carries the label) or "knowledge" (the label needs real knowledge: which
    response names a country's capital right; LLM Classification Finetuning's schema only)."""
    from kagflow.classifier import synth

    extra = {"text_format": text_format, **({} if n_public is None else {"n_public": n_public})}
    if kind == "knowledge":
        if config.data != DataConfig() or text_format != "turns":
            raise DataError(f"kagflow data synth --kind knowledge writes LLM Classification Finetuning's files only "
                            f"(JSON lists of turns), and {config.path.name}'s [data] or --text-format asks for "
                            "another schema",
                            context=f"file {config.path}, table [data]; --text-format {text_format}",
                            hint="drop [data]'s changes and --text-format, or use --kind marker")
        paths = synth.write_knowledge_competition(out, n_train=n_train, n_test=n_test, seed=seed,
                                                  n_public=n_public)
        (Path(out) / SYNTHETIC_MARK).write_text("written by kagflow's synthetic generator (kagflow data synth "
                                                "--kind knowledge)\n", encoding="utf-8")
        return paths
    if kind != "marker":
        raise DataError(f"unknown synthetic kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    if config.data != DataConfig():  # the generator of any [data] schema is the classifier's Task's
        try:
            from kagflow.classifier.task import Task
        except ImportError:
            raise DataError(f"{config.path.name}: [data] is not LLM Classification Finetuning's schema, and this "
                            "kagflow's synthetic generator makes only that one",
                            context=f"file {config.path}, table [data]",
                            hint="host the competition's own files: kagflow local competition --files DIR --metric "
                                 f"{config.data.metric} --accept-rules") from None
        extra["task"] = Task.from_params(config.data.params())
    paths = synth.write_synthetic_competition(out, n_train=n_train, n_test=n_test, seed=seed, **extra)
    (Path(out) / SYNTHETIC_MARK).write_text("written by kagflow's synthetic generator (kagflow data synth)\n",
                                            encoding="utf-8")
    return paths


def synthetic_files(config: Config) -> Optional[Path]:
    """The project's synthetic competition folder, when it may be used: the one ``kagflow data synth`` wrote for
    this competition, or, for the default competition, made once ([tiny] sizes and seed). None otherwise."""
    out = config.layout.competition_files(config.project.competition)
    made = (out / "solution.csv").is_file() and (out / "hidden" / config.data.test_file).is_file()
    if made and ((out / SYNTHETIC_MARK).is_file() or config.project.competition == COMPETITION):
        return out
    if config.project.competition != COMPETITION:
        return None
    t = config.tiny
    write_synthetic(config, out, n_train=t.n_train, n_test=t.n_test, seed=t.seed,
                    n_public=min(PUBLIC_TEST_ROWS, t.n_test))
    return out


def not_hosted(config: Config) -> DataError:
    slug = config.project.competition
    return DataError(f"competition {slug} has no data on the local Kaggle: kagflow makes synthetic data only for "
                     f"{COMPETITION} or when asked",
                     context=f"file {config.path}, [project] competition = {slug!r}",
                     hint=f"host its files (train.csv, test.csv, sample_submission.csv, solution.csv, hidden/): "
                          f"kagflow local competition --files DIR --metric {config.data.metric} --accept-rules; "
                          "or, to try the flow on generated data in [data]'s schema, run kagflow data synth first")


def host_competition(config: Config, data: Path, *, files: Optional[Path] = None, metric: Optional[str] = None,
                     accept_rules: bool = False) -> CompetitionData:
    """Host the project's competition on the local server whose data folder is ``data``: ``files`` (the user's,
    scored by ``metric``, else [data] metric; synthetic if ``kagflow data synth`` wrote them); without them, keep
    what the server hosts already, else host the synthetic competition where it may be used
    (:func:`synthetic_files`), else refuse (:func:`not_hosted`). With
    ``accept_rules``, accept its rules as the project's user (like Kaggle, it refuses downloads and submissions
    until then). Idempotent."""
    from kagflow.local.server import competition

    slug = config.project.competition
    if files is None:
        hosted = competition.hosted_competition(data, slug)
        if hosted is None or hosted.synthetic:
            synthetic = synthetic_files(config)
            if synthetic is None and hosted is None:
                raise not_hosted(config)
            if synthetic is not None:
                competition.install_competition(data, slug, synthetic, metric=config.data.metric, synthetic=True)
    else:
        name = metric_rules.metric(metric or config.data.metric).name  # did-you-mean for a misspelled one
        check_files(config, Path(files))
        # a folder kagflow data synth wrote stays synthetic, whoever hosts it: its reports say so
        competition.install_competition(data, slug, files, metric=name,
                                        synthetic=(Path(files) / SYNTHETIC_MARK).is_file())
    if accept_rules:
        competition.accept_rules(data, slug, config.username)
    return hosted_data(config, data)


def check_files(config: Config, files: Path) -> None:
    """Refuse to host a folder whose train and test files lack [data]'s columns (the first problem, as `check`
    words it): a kernel would fail on them."""
    from kagflow.workflow.check import check_headers

    found = {p.name: p for p in sorted(files.glob("*.csv")) if p.name != "solution.csv"}
    problem = next(iter(check_headers(config, found, whole=True)), None)
    if problem is not None:
        raise DataError(f"{files}: {problem.message}", context=f"{problem.file}: {problem.field}",
                        hint=f"{problem.fix}; or fix the files, then host the folder again")


def hosted_data(config: Config, data: Path) -> CompetitionData:
    """What the local server of ``data`` hosts as the project's competition (:func:`not_hosted` if nothing)."""
    from kagflow.local.server import competition

    hosted = competition.hosted_competition(data, config.project.competition)
    if hosted is None:
        raise not_hosted(config)
    return CompetitionData(hosted.slug, dict(hosted.files), hosted.synthetic)


def local_files(config: Config, data: Path) -> Optional[dict]:
    """The competition's files on the local Kaggle of ``data`` (name -> path), without hosting anything: what it
    hosts, else the synthetic files where they may be used (None while they are not made yet: they will be, in
    [data]'s schema); else :func:`not_hosted`, with a did-you-mean among the hosted competitions."""
    from kagflow.local.server import competition

    slug = config.project.competition
    hosted = competition.hosted_competition(data, slug)
    if hosted is not None:
        return dict(hosted.files)
    folder = config.layout.competition_files(slug)
    if (folder / SYNTHETIC_MARK).is_file() or slug == COMPETITION:
        found = {p.name: p for p in sorted(folder.glob("*.csv")) if p.name != "solution.csv"}
        return found or None
    error = not_hosted(config)
    close = get_close_matches(slug, competition.hosted_slugs(data), n=1, cutoff=0.6)
    if close:
        error = DataError(error.message, context=error.context,
                          hint=f"did you mean [project] competition = {close[0]!r} (hosted on the local Kaggle)? "
                               f"Else: {error.hint}")
    raise error
