"""`kagflow init`: a project folder with its kagflow.toml and the generated-content folders.

The kagflow.toml written is ``defaults.toml`` beside this module (every table, key and default, commented),
with ``[project] competition`` and ``username`` set: edited with tomlkit, so its comments stay.
"""

from __future__ import annotations

from pathlib import Path

from kagflow.errors import ConfigError
from kagflow.project.config import COMPETITION, DEFAULTS_FILE
from kagflow.project.layout import GENERATED, Layout
from kagflow.rules import slugs

FOLDER_READMES = {
    "wheels": "# wheels/\n\n`kagflow wheels build` writes the offline wheels dataset here: `wheels/<dataset-slug>/` "
              "holds the wheels, `dataset-metadata.json` and `kagflow-wheels-manifest.json`. Generated; "
              "git-ignored.\n",
    "kernels": "# kernels/\n\n`kagflow kernel render` writes each kernel here: `kernels/<kernel-slug>/` holds the "
               "notebook and `kernel-metadata.json`; `kagflow kernel pull` adds `output/v<N>/` per version. "
               "Generated; git-ignored.\n",
    "models": "# models/\n\n`kagflow model publish` writes `models/<model-slug>/model-metadata.json` and "
              "`models/<model-slug>/<instance>/model-instance-metadata.json` beside the files it uploads; "
              "`kagflow model tiny` writes the tiny offline checkpoint to `models/tiny-gemma2/`. Generated; "
              "git-ignored.\n",
}


TITLE_MAX = 50  # the longest title kernels, datasets and models all accept (kagflow.rules.slugs)
# The names that hold a project's competition-specific work, each titled "<competition> <suffix>" for any
# competition other than the default (whose titles are defaults.toml's): a second project never becomes a new
# version of the first one's kernels, adapter or wheels. The base model (the same weights) stays shared.
PROJECT_TITLES = {("kernels", "train"): "train", ("kernels", "infer"): "infer", ("adapter_model",): "adapter",
                  ("wheels",): "wheels"}


def project_titles(competition: str) -> dict:
    """(table path) -> the title ``init`` writes for ``competition``: its slug, cut at a hyphen to fit, then what
    the entry is (``wsdm-cup-multilingual-chatbot-arena train``)."""
    room = TITLE_MAX - 1 - max(len(s) for s in PROJECT_TITLES.values())
    stem = slugs.suggest_slug(competition, min_len=1, max_len=room)
    return {where: f"{stem} {suffix}" for where, suffix in PROJECT_TITLES.items()}


def config_text(*, competition: str = COMPETITION, username: str = "") -> str:
    """The kagflow.toml `kagflow init` writes: the defaults, with this project's competition and username (and,
    for another competition than the default, the titles of :func:`project_titles`)."""
    import tomlkit

    doc = tomlkit.parse(DEFAULTS_FILE.read_text(encoding="utf-8"))
    doc["project"]["competition"] = competition
    doc["project"]["username"] = username
    if competition != COMPETITION:
        for where, title in project_titles(competition).items():
            table = doc
            for key in where:
                table = table[key]
            table["title"] = title
    return tomlkit.dumps(doc)


def init_project(folder: Path, *, competition: str = COMPETITION, username: str = "",
                 force: bool = False) -> Path:
    """Write kagflow.toml and the wheels/, kernels/, models/ folders into ``folder``."""
    layout = Layout(Path(folder))
    slugs.check_competition(competition)
    if username:
        slugs.check_owner(username)
    target = layout.config_file
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists", hint="edit it, or pass --force to overwrite it")
    layout.root.mkdir(parents=True, exist_ok=True)
    target.write_text(config_text(competition=competition, username=username), encoding="utf-8")
    for name in GENERATED:
        layout.generated(name).mkdir(exist_ok=True)
        readme = layout.generated(name) / "README.md"
        if not readme.exists():
            readme.write_text(FOLDER_READMES[name], encoding="utf-8")
    gitignore = layout.root / ".gitignore"
    if not gitignore.exists():
        ignored = "".join(f"/{name}/*\n!/{name}/README.md\n" for name in GENERATED)
        gitignore.write_text(f"{layout.private.name}/\n{ignored}", encoding="utf-8")
    return target
