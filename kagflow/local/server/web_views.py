"""The data of each page of the local Kaggle, read from the store with the API's own access rules.

Each function takes the request's :class:`~kagflow.local.server.api.Ctx` (``ctx.user``: the signed-in
viewer or None) and returns what its template shows. Resources are found with the API's ``find_*``
functions, so a private dataset, model or kernel is "not found" (404) to anyone but its owner, as on the
API; lists keep only what :func:`kagflow.local.server.access.visible` lets the viewer see. A user's
submissions are theirs alone; the leaderboard is public, as on Kaggle.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Optional

from kagglesdk.competitions.types.competition_api_service import ApiGetLeaderboardRequest

from kagflow.errors import NamingError
from kagflow.local.server import access, api_competitions, api_datasets, api_kernels, api_models, transfer, web_outputs
from kagflow.local.server.access import Grant
from kagflow.local.server.api import Ctx
from kagflow.local.server.competition import rules_accepted
from kagflow.local.server.protocol import ApiError
from kagflow.rules import slugs

RUNNING = ("QUEUED", "RUNNING", "CANCEL_REQUESTED")  # a version whose log is still being written


@dataclass
class KernelVersion:
    id: int
    number: int
    status: str
    failure: str
    created: float
    started: Optional[float]
    finished: Optional[float]
    accelerator: str
    internet: bool
    sources: dict            # {"dataset": [...], "model": [...], "competition": [...], "kernel": [...]}
    parameters: dict         # {name: source text of its value}
    parameters_problem: str
    changed: dict            # the parameters that differ from the version before

    @property
    def seconds(self) -> Optional[float]:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started

    @property
    def live(self) -> bool:
        return self.status in RUNNING


def accelerator(settings: dict) -> str:
    """What Kaggle's notebook page calls the accelerator: the machine shape, else GPU/TPU, else None."""
    if settings.get("machine_shape"):
        return settings["machine_shape"]
    return "GPU" if settings.get("enable_gpu") else "TPU" if settings.get("enable_tpu") else "None"


def _version(kernel, row, before: Optional[dict]) -> KernelVersion:
    """One version of ``kernel``; ``before``: the parameters of the version before it (None for the first)."""
    settings = json.loads(row["settings"] or "{}")
    params, problem = web_outputs.parameters(row["source"] or "", kernel["kernel_type"])
    return KernelVersion(row["id"], row["number"], row["status"], row["failure"] or "", row["created"],
                         row["started"], row["finished"], accelerator(settings), bool(settings.get("enable_internet")),
                         {kind: settings.get(f"{kind}_sources", []) for kind in access.KINDS},
                         params, problem, web_outputs.changed(params, before))


def _versions(ctx: Ctx, kernel) -> list[KernelVersion]:
    out: list[KernelVersion] = []
    for row in ctx.store.all("SELECT * FROM kernel_versions WHERE kernel_id=? ORDER BY number", kernel["id"]):
        out.append(_version(kernel, row, out[-1].parameters if out else None))
    return out


def _visible(ctx: Ctx, table: str) -> list:
    return [r for r in ctx.store.all(f"SELECT * FROM {table} ORDER BY owner, slug") if access.visible(r, ctx.user)]


def index(ctx: Ctx) -> dict:
    kernels = []
    for kernel in _visible(ctx, "kernels"):
        latest = ctx.store.one("SELECT * FROM kernel_versions WHERE kernel_id=? ORDER BY number DESC LIMIT 1",
                               kernel["id"])
        if latest is not None:
            kernels.append({"row": kernel, "latest": _version(kernel, latest, None)})
    kernels.sort(key=lambda k: k["latest"].created, reverse=True)
    models = [{"row": m, "instances": ctx.store.all(
        "SELECT i.*, (SELECT MAX(number) FROM model_versions WHERE instance_id = i.id) AS latest "
        "FROM model_instances i WHERE model_id=? ORDER BY i.id", m["id"])} for m in _visible(ctx, "models")]
    datasets = [{"row": d, "latest": ctx.store.one("SELECT * FROM dataset_versions WHERE dataset_id=? ORDER BY "
                                                   "number DESC LIMIT 1", d["id"])} for d in _visible(ctx, "datasets")]
    return {"competitions": ctx.store.all("SELECT * FROM competitions ORDER BY slug"), "kernels": kernels,
            "models": models, "datasets": [d for d in datasets if d["latest"] is not None]}


def kernel(ctx: Ctx, owner: str, slug: str, *, number: Optional[int] = None,
           script_version_id: Optional[int] = None) -> dict:
    """``/code/OWNER/SLUG`` (the latest version), ``.../versions/N`` or ``?scriptVersionId=ID``."""
    row = api_kernels.find_kernel(ctx, owner, slug)
    versions = _versions(ctx, row)
    if not versions:
        raise ApiError(404, f"Kernel {owner}/{slug} has no version")
    chosen = [v for v in versions if (number is None or v.number == number)
              and (script_version_id is None or v.id == script_version_id)]
    if not chosen:
        raise ApiError(404, f"Kernel {owner}/{slug} has no version "
                            f"{number if number is not None else f'with scriptVersionId {script_version_id}'}")
    version = chosen[-1]
    grant = Grant("kernel_version", version.id, ctx.user or "")
    finished = not version.live
    files = web_outputs.output_files(ctx.store, owner, slug, version.number, grant) if finished else []
    submissions = {}
    if ctx.user == row["owner"]:  # submissions are their owner's alone
        for sub in ctx.store.all("SELECT * FROM submissions WHERE kernel_version_id IN (SELECT id FROM "
                                 "kernel_versions WHERE kernel_id=?) ORDER BY id", row["id"]):
            submissions.setdefault(sub["kernel_version_id"], []).append(sub)
    return {"kernel": row, "versions": list(reversed(versions)), "version": version,
            "log": web_outputs.log_of(ctx.store, owner, slug, version.number, grant),
            "files": files, "images": web_outputs.images(files),
            "metrics": web_outputs.metrics(ctx.store, owner, slug, version.number, files) if finished else None,
            "submissions": submissions,
            "stream": f"/api/v1/kernels/logs/stream/{owner}/{slug}?versionLabel=v{version.number}"}


def _used_by(ctx: Ctx, kind: str, match) -> list:
    """Visible kernels whose latest version mounts a source of ``kind`` that ``match(ref)`` accepts."""
    out = []
    for row in _visible(ctx, "kernels"):
        latest = ctx.store.one("SELECT number, settings FROM kernel_versions WHERE kernel_id=? ORDER BY number DESC "
                               "LIMIT 1", row["id"])
        refs = json.loads(latest["settings"] or "{}").get(f"{kind}_sources", []) if latest else []
        hits = [ref for ref in refs if isinstance(ref, str) and match(ref)]
        if hits:
            out.append({"kernel": row, "version": latest["number"], "refs": hits})
    return out


def dataset(ctx: Ctx, owner: str, slug: str, *, number: Optional[int] = None) -> dict:
    """``/datasets/OWNER/SLUG`` (the latest version) or ``.../versions/N``."""
    row = api_datasets.find(ctx, owner, slug)
    version = api_datasets.version_of(ctx, row, number)
    versions = ctx.store.all("SELECT v.*, (SELECT COUNT(*) FROM files WHERE set_kind=? AND set_id=v.id) AS n_files, "
                             "(SELECT COALESCE(SUM(size), 0) FROM files WHERE set_kind=? AND set_id=v.id) AS bytes "
                             "FROM dataset_versions v WHERE dataset_id=? ORDER BY number DESC",
                             api_datasets.KIND, api_datasets.KIND, row["id"])
    ref = f"{owner}/{slug}"
    return {"dataset": row, "version": version, "versions": versions,
            "files": _files(ctx, api_datasets.KIND, version["id"]),
            "used_by": _used_by(ctx, "dataset", lambda r: r == ref)}


def _files(ctx: Ctx, kind: str, set_id: int) -> list[web_outputs.OutputFile]:
    grant = Grant(kind, set_id, ctx.user or "")
    return [web_outputs.OutputFile(f["name"], f["size"], transfer.signed_url(
        ctx.store, "", ctx.store.blob_path(f["sha256"]), f["name"], grant)) for f in ctx.store.files_of(kind, set_id)]


def model(ctx: Ctx, owner: str, slug: str, *, framework: str = "", instance: str = "",
          number: Optional[int] = None) -> dict:
    """``/models/OWNER/MODEL``, ``.../FRAMEWORK/INSTANCE`` and ``.../FRAMEWORK/INSTANCE/N`` (the URLs the API and
    kagglehub print): the model with every instance; the chosen instance's chosen version (default: latest)."""
    row = api_models.find_model(ctx, owner, slug)
    instances = []
    for inst in ctx.store.all("SELECT * FROM model_instances WHERE model_id=? ORDER BY id", row["id"]):
        versions = ctx.store.all(
            "SELECT v.*, (SELECT COUNT(*) FROM files WHERE set_kind=? AND set_id=v.id) AS n_files, "
            "(SELECT COALESCE(SUM(size), 0) FROM files WHERE set_kind=? AND set_id=v.id) AS bytes "
            "FROM model_versions v WHERE instance_id=? ORDER BY number DESC", api_models.KIND, api_models.KIND,
            inst["id"])
        fw = api_models.framework_source(inst["framework"])
        instances.append({"row": inst, "framework": fw, "ref": f"{owner}/{slug}/{fw}/{inst['slug']}",
                          "versions": versions, "base": _base_model(inst["base_model"] or "")})
    chosen = instances[0] if instances and not instance else None
    if instance:
        chosen = next((i for i in instances if i["row"]["slug"] == instance
                       and i["framework"] == framework.lower()), None)
        if chosen is None:
            raise ApiError(404, f"Model instance {owner}/{slug}/{framework}/{instance} not found")
    version = None
    if chosen is not None and chosen["versions"]:
        version = next((v for v in chosen["versions"] if number is None or v["number"] == number), None)
        if version is None:
            raise ApiError(404, f"Model instance {chosen['ref']} has no version {number}")
    prefix = f"{owner}/{slug}/"
    return {"model": row, "instances": instances, "instance": chosen, "version": version,
            "files": _files(ctx, api_models.KIND, version["id"]) if version else [],
            "used_by": _used_by(ctx, "model", lambda r: r.startswith(prefix))}


def _base_model(text: str) -> Optional[dict]:
    """The base model instance an instance names (``owner/model/framework/instance``), with its page's path."""
    if not text:
        return None
    try:
        handle = slugs.ModelInstanceHandle.parse(text)
    except NamingError:
        return {"ref": text, "path": ""}
    return {"ref": str(handle), "path": f"/models/{handle}"}


def competition(ctx: Ctx, slug: str) -> dict:
    """``/competitions/SLUG``: what the competition is, its data files (links once the viewer accepted the
    rules, as downloads are) and the viewer's submissions left today."""
    comp = api_competitions.find(ctx, slug)
    accepted = rules_accepted(ctx.store, slug, ctx.user)
    files = _files(ctx, api_competitions.KIND, comp["id"])
    if not accepted:
        files = [web_outputs.OutputFile(f.name, f.size, "") for f in files]
    used = ctx.store.one("SELECT COUNT(*) AS n FROM submissions WHERE competition=? AND owner=? AND created>?",
                         slug, ctx.user or "", time.time() - 24 * 3600)["n"]
    teams = ctx.store.one("SELECT COUNT(DISTINCT owner) AS n FROM submissions WHERE competition=?", slug)["n"]
    return {"competition": comp, "accepted": accepted, "files": files, "teams": teams,
            "left_today": max(ctx.settings.daily_submissions - used, 0) if ctx.user else None}


def leaderboard(ctx: Ctx, slug: str) -> dict:
    """Each team's best score (the API's GetLeaderboard: one ranking rule), with its entries and last date."""
    data = competition(ctx, slug)
    ranked = _ranked(ctx, slug)
    counts = {r["owner"]: r for r in ctx.store.all(
        "SELECT owner, COUNT(*) AS entries, MAX(created) AS last FROM submissions WHERE competition=? GROUP BY owner",
        slug)}
    data["rows"] = [{"rank": i, "team": s.team_name, "score": s.score, "date": s.submission_date,
                     "entries": counts[s.team_name]["entries"] if s.team_name in counts else 0,
                     "last": counts[s.team_name]["last"] if s.team_name in counts else None}
                    for i, s in enumerate(ranked, 1)]
    return data


def _ranked(ctx: Ctx, slug: str) -> list:
    request = ApiGetLeaderboardRequest()
    request.competition_name = slug
    request.page_size = 10 ** 6
    return api_competitions.get_leaderboard(ctx, request).submissions


def submissions(ctx: Ctx, slug: str) -> dict:
    """The viewer's submissions (newest first) with the kernel version behind each; 401 with no viewer."""
    data = competition(ctx, slug)
    if not ctx.user:
        raise ApiError(401, "Your submissions are shown to you only: sign in with `kagflow local open`")
    rows = ctx.store.all("SELECT s.*, v.number AS kernel_version, k.owner AS kernel_owner, k.slug AS kernel_slug, "
                         "v.settings AS kernel_settings FROM submissions s LEFT JOIN kernel_versions v ON "
                         "v.id = s.kernel_version_id LEFT JOIN kernels k ON k.id = v.kernel_id "
                         "WHERE s.competition=? AND s.owner=? ORDER BY s.id DESC", slug, ctx.user)
    best = next((s.score for s in _ranked(ctx, slug) if s.team_name == ctx.user), None)  # the leaderboard's rule
    data["rows"] = [{"row": r, "models": json.loads(r["kernel_settings"] or "{}").get("model_sources", []),
                     "best": best is not None and r["status"] == "COMPLETE" and r["public_score"] is not None
                     and float(r["public_score"]) == float(best)} for r in rows]
    data["best"] = best
    return data
