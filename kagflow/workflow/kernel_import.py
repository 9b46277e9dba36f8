"""`kagflow kernel import`: adopt a public notebook as a kernel kagflow renders, checks and pushes.

The hub (the official client) is imported inside the verbs that talk to it: the CLI's start stays fast.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from kagflow.errors import ConfigError
from kagflow.project.config import IMPORT, Config
from kagflow.project.edit import edit_config
from kagflow.rules import slugs
from kagflow.rules.kaggle import DEFAULT_ACCELERATOR, KERNELSPEC

if TYPE_CHECKING:
    from kagflow.hub.gateway import Gateway


@dataclass(frozen=True)
class ImportResult:
    name: str
    title: str
    folder: Path


def import_kernel(gw: "Gateway", config: Config, ref: str, *, name: Optional[str] = None) -> ImportResult:
    from kagflow.hub.kernels import pull_notebook

    handle = slugs.KernelHandle.parse(ref)
    name = name or handle.slug.replace("-", "_")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ConfigError(f"kernel name {name!r} is not a valid TOML key", hint="use letters, digits, _ and -")
    if name in config.kernels:
        raise ConfigError(f"a kernel named {name!r} is already in {config.path.name}",
                          hint=f"pick another name with --as, or remove [kernels.{name}]")
    with tempfile.TemporaryDirectory() as tmp:
        meta = pull_notebook(gw, handle, Path(tmp))
        title = _fit_title(meta["title"])
        slug = slugs.kernel_slug(title)
        folder = config.layout.kernel_dir(slug)
        folder.mkdir(parents=True, exist_ok=True)
        code_file = meta["code_file"] or f"{slug}.ipynb"
        target = folder / Path(code_file).name
        shutil.copyfile(Path(tmp) / code_file, target)
    if target.suffix == ".ipynb":
        nb = json.loads(target.read_text(encoding="utf-8"))
        md = nb.setdefault("metadata", {})
        if not md.get("kernelspec", {}).get("name"):
            md["kernelspec"] = KERNELSPEC  # Kaggle fails notebooks without one ("No kernel name found")
        target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    sources = ([f"dataset:{s}" for s in meta["dataset_sources"]] + [f"model:{s}" for s in meta["model_sources"]]
               + [f"competition:{s}" for s in meta["competition_sources"]]
               + [f"notebook:{s}" for s in meta["kernel_sources"]])
    accelerator = meta["machine_shape"] if meta["machine_shape"] != "None" else DEFAULT_ACCELERATOR

    def add_kernel(doc) -> None:
        import tomlkit

        table = tomlkit.table()
        table.comment(f"imported from {handle} by `kagflow kernel import`")
        for key, value in (("title", title), ("kind", IMPORT), ("code_file", target.name),
                           ("accelerator", accelerator), ("internet", meta["enable_internet"]),
                           ("private", True), ("sources", sources)):
            table[key] = value
        if "kernels" not in doc:
            doc["kernels"] = tomlkit.table(is_super_table=True)
        doc["kernels"][name] = table

    edit_config(config.path, add_kernel)
    return ImportResult(name, title, folder)


def _fit_title(title: str) -> str:
    """A title within Kaggle's limits that still reads like the original."""
    title = title.strip()
    if len(title) > slugs.KERNEL_TITLE_MAX:
        title = title[: slugs.KERNEL_TITLE_MAX].rsplit(" ", 1)[0]
    while len(slugs.slugify(title)) < slugs.KERNEL_SLUG_MIN:
        title += " copy"
    return title


def import_notebook(session, ref: str, *, name: Optional[str] = None) -> ImportResult:
    """Adopt public notebook ``ref`` as a kernel of this project (kagflow kernel import)."""
    return import_kernel(session.gateway, session.target.config, ref, name=name)
