"""competitions.CompetitionApiService: list, data files, code and file submissions, submissions and scores."""

from __future__ import annotations

import hashlib
import json
import time

from kagglesdk.competitions.types.competition_api_service import (
    ApiCompetition,
    ApiCreateCodeSubmissionResponse,
    ApiCreateSubmissionResponse,
    ApiDataFile,
    ApiGetLeaderboardResponse,
    ApiLeaderboardSubmission,
    ApiListCompetitionsResponse,
    ApiListDataFilesResponse,
    ApiListSubmissionsResponse,
    ApiStartSubmissionUploadResponse,
    ApiSubmission,
    ApiSubmissionLimits,
)
from kagglesdk.competitions.types.competition_enums import CompetitionListTab, CompetitionSortBy
from kagglesdk.competitions.types.submission_status import SubmissionStatus

from kagflow.local.server import competition, metrics, transfer
from kagflow.local.server.access import Grant
from kagflow.local.server.api import Ctx, Redirect, new_token, now, page, route, utc
from kagflow.local.server.api_kernels import find_kernel, find_version
from kagflow.local.server.archives import Pack, blob_members, bundle, file_members
from kagflow.local.server.names import check_name, check_relpath
from kagflow.local.server.protocol import ApiError

KIND = "competition"


def find(ctx: Ctx, slug: str):
    row = ctx.store.one("SELECT * FROM competitions WHERE slug=?", slug or "")
    if row is None:
        raise ApiError(404, f"Competition {slug!r} not found")
    return row


def describe(ctx: Ctx, comp) -> ApiCompetition:
    item = ApiCompetition()
    item.id = comp["id"]
    item.ref = f"{ctx.base_url}/competitions/{comp['slug']}"
    item.title = comp["title"]
    item.url = item.ref
    item.category = competition.CATEGORIES.get(comp["category"], comp["category"])
    item.evaluation_metric = metrics.get(comp["metric"]).title
    item.team_count = _teams(ctx, comp)
    item.is_kernels_submissions_only = bool(comp["kernels_only"])
    item.max_daily_submissions = ctx.settings.daily_submissions
    item.enabled_date = utc(comp["created"])
    item.user_has_entered = competition.rules_accepted(ctx.store, comp["slug"], ctx.user)
    return item


def require_rules(ctx: Ctx, comp) -> str:
    """Kaggle answers 403 to downloads and submissions until the user accepted the competition's rules."""
    user = ctx.require_user()
    if not competition.rules_accepted(ctx.store, comp["slug"], user):
        raise ApiError(403, f"You must accept the rules of competition {comp['slug']!r} first (on Kaggle: "
                            f"https://www.kaggle.com/competitions/{comp['slug']}/rules; on the local Kaggle: "
                            f"kagflow local competition --accept-rules, as {user})")
    return user


def _teams(ctx: Ctx, comp) -> int:
    return ctx.store.one("SELECT COUNT(DISTINCT owner) AS n FROM submissions WHERE competition=?", comp["slug"])["n"]


def _category_key(segment) -> str:
    """``HOST_SEGMENT_GETTING_STARTED`` → ``gettingStarted`` (the key :data:`competition.CATEGORIES` uses)."""
    words = segment.name.removeprefix("HOST_SEGMENT_").lower().split("_")
    return words[0] + "".join(w.capitalize() for w in words[1:])


def _in_group(ctx: Ctx, comp, group) -> bool:
    """``--group``: general and everything list every hosted competition, entered those whose rules the caller
    accepted, community the community category; none is hosted by a user or unlaunched here."""
    if group in (None, CompetitionListTab.COMPETITION_LIST_TAB_GENERAL,
                 CompetitionListTab.COMPETITION_LIST_TAB_EVERYTHING):
        return True
    if group == CompetitionListTab.COMPETITION_LIST_TAB_ENTERED:
        return competition.rules_accepted(ctx.store, comp["slug"], ctx.user)
    if group == CompetitionListTab.COMPETITION_LIST_TAB_COMMUNITY:
        return comp["category"] == "community"
    return False  # hosted, unlaunched: the local Kaggle's competitions have no user host and are all launched


# --sort-by: the orders the local Kaggle can tell; prize, deadlines and "best"/"grouped"/"relevance" (no prizes,
# no deadlines, no ranking signal here) keep the listing's order, by slug.
_SORTS = {CompetitionSortBy.COMPETITION_SORT_BY_RECENTLY_CREATED: (lambda ctx, c: -c["created"]),
          CompetitionSortBy.COMPETITION_SORT_BY_NUMBER_OF_TEAMS: (lambda ctx, c: -_teams(ctx, c))}


@route("competitions.CompetitionApiService/ListCompetitions")
def list_competitions(ctx: Ctx, req) -> ApiListCompetitionsResponse:
    category = _category_key(req.category) if req.category and req.category.value else ""
    rows = [c for c in ctx.store.all("SELECT * FROM competitions ORDER BY slug")
            if _in_group(ctx, c, req.group) and (not category or c["category"] == category)
            and (not req.search or req.search.lower() in (c["slug"] + " " + c["title"]).lower())]
    if req.sort_by in _SORTS:
        rows.sort(key=lambda c: _SORTS[req.sort_by](ctx, c))
    chunk, token = page(rows, req)
    resp = ApiListCompetitionsResponse()
    resp.competitions = [describe(ctx, c) for c in chunk]
    resp.next_page_token = token
    return resp


@route("competitions.CompetitionApiService/GetCompetition")
def get_competition(ctx: Ctx, req) -> ApiCompetition:
    return describe(ctx, find(ctx, req.competition_name))


@route("competitions.CompetitionApiService/ListDataFiles")
def list_data_files(ctx: Ctx, req) -> ApiListDataFilesResponse:
    comp = find(ctx, req.competition_name)
    files = []
    for f in ctx.store.files_of(KIND, comp["id"]):
        item = ApiDataFile()
        item.ref = item.name = f["name"]
        item.total_bytes = f["size"]
        item.creation_date = utc(f["created"])
        files.append(item)
    chunk, token = page(files, req)
    resp = ApiListDataFilesResponse()
    resp.files = chunk
    resp.next_page_token = token
    return resp


@route("competitions.CompetitionApiService/DownloadDataFile")
def download_data_file(ctx: Ctx, req) -> Redirect:
    comp = find(ctx, req.competition_name)
    require_rules(ctx, comp)
    check_relpath(req.file_name or "")
    match = [f for f in ctx.store.files_of(KIND, comp["id"]) if f["name"] == req.file_name]
    if not match:
        raise ApiError(404, f"File {req.file_name!r} not found in competition {comp['slug']!r}")
    return Redirect(transfer.signed_url(ctx.store, ctx.base_url, ctx.store.blob_path(match[0]["sha256"]),
                                        match[0]["name"], Grant(KIND, comp["id"], ctx.user or "")))


@route("competitions.CompetitionApiService/DownloadDataFiles")
def download_data_files(ctx: Ctx, req) -> Redirect:
    comp = find(ctx, req.competition_name)
    require_rules(ctx, comp)
    files = ctx.store.files_of(KIND, comp["id"])
    archive = bundle(ctx.store, Pack("competitions", (comp["slug"],), "", blob_members(ctx.store, files)))
    return Redirect(transfer.signed_url(ctx.store, ctx.base_url, archive, f"{comp['slug']}.zip",
                                        Grant(KIND, comp["id"], ctx.user or "")))


@route("competitions.CompetitionApiService/CreateCodeSubmission")
def create_code_submission(ctx: Ctx, req) -> ApiCreateCodeSubmissionResponse:
    comp = find(ctx, req.competition_name)
    user = require_rules(ctx, comp)
    owner = req.kernel_owner or user
    kernel = find_kernel(ctx, owner, req.kernel_slug)
    ctx.require_owner(kernel["owner"], "competitions.submit")
    version = find_version(ctx, kernel, f"v{req.kernel_version}" if req.kernel_version else "")
    settings = json.loads(version["settings"])
    ref = f"{kernel['owner']}/{kernel['slug']} version {version['number']}"
    if settings.get("enable_internet"):
        raise ApiError(400, f"Submission not allowed: {ref} has internet access enabled; this competition "
                            "requires internet off. Set enable_internet to false, push a new version and submit it")
    if comp["slug"] not in settings.get("competition_sources", []):
        raise ApiError(400, f"Submission not allowed: {ref} does not have competition {comp['slug']!r} as a data "
                            "source; add it to competition_sources, push a new version and submit it")
    file_name = req.file_name or "submission.csv"
    check_relpath(file_name)
    _check_quota(ctx, comp, user)
    sub_id = ctx.store.run("INSERT INTO submissions (competition, owner, kernel_version_id, file_name, description, "
                           "status, error, created) VALUES (?, ?, ?, ?, ?, 'PENDING', '', ?)",
                           comp["slug"], user, version["id"], file_name, req.submission_description or "", now())
    ctx.jobs.submit_score(sub_id)
    resp = ApiCreateCodeSubmissionResponse()
    resp.message = f"Successfully submitted to {comp['title']}"
    resp.ref = sub_id
    return resp


def _check_quota(ctx: Ctx, comp, user: str) -> None:
    used = ctx.store.one("SELECT COUNT(*) AS n FROM submissions WHERE competition=? AND owner=? AND created>?",
                         comp["slug"], user, time.time() - 24 * 3600)["n"]
    if used >= ctx.settings.daily_submissions:
        raise ApiError(429, f"You have used all {ctx.settings.daily_submissions} submissions of the last 24 hours",
                       headers={"Retry-After": "3600"})


@route("competitions.CompetitionApiService/StartSubmissionUpload")
def start_submission_upload(ctx: Ctx, req) -> ApiStartSubmissionUploadResponse:
    user = ctx.require_user()
    find(ctx, req.competition_name)
    name = check_name(req.file_name or "submission.csv")
    if req.content_length is None or not 0 < req.content_length <= ctx.settings.max_blob_bytes:
        raise ApiError(400, "contentLength must be given and positive")
    token = new_token()
    ctx.store.run("INSERT INTO uploads VALUES (?, ?, ?, 'COMPETITION_SUBMISSION', ?, NULL, ?)", token, user, name,
                  req.content_length, now())
    resp = ApiStartSubmissionUploadResponse()
    resp.token = token
    resp.create_url = f"{ctx.base_url}/upload/{token}"
    return resp


@route("competitions.CompetitionApiService/CreateSubmission")
def create_submission(ctx: Ctx, req) -> ApiCreateSubmissionResponse:
    """A file submission (``kaggle competitions submit -f file.csv``), scored like a code submission's output."""
    comp = find(ctx, req.competition_name)
    user = require_rules(ctx, comp)
    if comp["kernels_only"]:
        raise ApiError(400, f"Submission not allowed: {comp['slug']!r} is a code competition that only accepts "
                            "notebook submissions (kaggle competitions submit -k owner/notebook -v N -f "
                            "submission.csv)")
    upload = ctx.store.one("SELECT * FROM uploads WHERE token=? AND owner=?", req.blob_file_tokens or "", user)
    if upload is None or upload["sha256"] is None:
        raise ApiError(400, "blobFileTokens must name a finished StartSubmissionUpload upload")
    _check_quota(ctx, comp, user)
    sub_id = ctx.store.run("INSERT INTO submissions (competition, owner, file_name, description, status, error, "
                           "created, blob_sha) VALUES (?, ?, ?, ?, 'PENDING', '', ?, ?)", comp["slug"], user,
                           upload["name"], req.submission_description or "", now(), upload["sha256"])
    ctx.jobs.submit_score(sub_id)
    resp = ApiCreateSubmissionResponse()
    resp.message = f"Successfully submitted to {comp['title']}"
    resp.ref = sub_id
    return resp


def describe_submission(ctx: Ctx, row) -> ApiSubmission:
    item = ApiSubmission()
    item.ref = row["id"]
    item.date = utc(row["created"])
    item.description = row["description"]
    item.file_name = row["file_name"]
    item.status = SubmissionStatus[row["status"]]
    if row["public_score"] is not None:
        item.public_score = row["public_score"]
    if row["error"]:
        item.error_description = row["error"]
    elif row["status"] == "PENDING" and row["progress"]:  # the local Kaggle's word on a running re-run
        item.error_description = row["progress"]
    item.submitted_by = item.submitted_by_ref = item.team_name = row["owner"]
    item.url = f"{ctx.base_url}/competitions/{row['competition']}/submissions#{row['id']}"
    return item


@route("competitions.CompetitionApiService/ListSubmissions")
def list_submissions(ctx: Ctx, req) -> ApiListSubmissionsResponse:
    user = ctx.require_user()
    comp = find(ctx, req.competition_name)
    rows = ctx.store.all("SELECT * FROM submissions WHERE competition=? AND owner=? ORDER BY id DESC",
                         comp["slug"], user)
    chunk, token = page(rows, req)
    resp = ApiListSubmissionsResponse()
    resp.submissions = [describe_submission(ctx, r) for r in chunk]
    resp.next_page_token = token
    return resp


@route("competitions.CompetitionApiService/GetSubmission")
def get_submission(ctx: Ctx, req) -> ApiSubmission:
    user = ctx.require_user()
    row = ctx.store.one("SELECT * FROM submissions WHERE id=? AND owner=?", req.ref or 0, user)
    if row is None:
        raise ApiError(404, f"Submission {req.ref} not found")
    return describe_submission(ctx, row)


@route("competitions.CompetitionApiService/GetSubmissionLimits")
def get_submission_limits(ctx: Ctx, req) -> ApiSubmissionLimits:
    user = ctx.require_user()
    comp = find(ctx, req.competition_name)
    used = ctx.store.one("SELECT COUNT(*) AS n FROM submissions WHERE competition=? AND owner=? AND created>?",
                         comp["slug"], user, time.time() - 24 * 3600)["n"]
    total = ctx.store.one("SELECT COUNT(*) AS n FROM submissions WHERE competition=? AND owner=?",
                          comp["slug"], user)["n"]
    resp = ApiSubmissionLimits()
    resp.num_today = used
    resp.num_total = total
    resp.num_allowed_now = max(ctx.settings.daily_submissions - used, 0)
    return resp



def leaderboard(ctx: Ctx, comp) -> list[tuple[str, float, float]]:
    """``(team, score, date)`` of each user's best completed submission (by the competition's metric), best first."""
    sign = 1 if metrics.get(comp["metric"]).lower_is_better else -1
    best: dict[str, tuple[float, float]] = {}
    for row in ctx.store.all("SELECT owner, public_score, created FROM submissions WHERE competition=? AND "
                             "status='COMPLETE'", comp["slug"]):
        score = float(row["public_score"])
        if row["owner"] not in best or sign * score < sign * best[row["owner"]][0]:
            best[row["owner"]] = (score, row["created"])
    ranked = sorted(best.items(), key=lambda item: (sign * item[1][0], item[1][1]))
    return [(owner, score, created) for owner, (score, created) in ranked]


def _team_id(owner: str) -> int:
    return int(hashlib.sha256(owner.encode()).hexdigest()[:7], 16)


@route("competitions.CompetitionApiService/GetLeaderboard")
def get_leaderboard(ctx: Ctx, req) -> ApiGetLeaderboardResponse:
    chunk, token = page(leaderboard(ctx, find(ctx, req.competition_name)), req)
    resp = ApiGetLeaderboardResponse()
    resp.submissions = []
    for owner, score, created in chunk:
        item = ApiLeaderboardSubmission()
        item.team_id = _team_id(owner)
        item.team_name = owner
        item.submission_date = utc(created)
        item.score = f"{score:.5f}"
        resp.submissions.append(item)
    resp.next_page_token = token
    return resp


@route("competitions.CompetitionApiService/DownloadLeaderboard")
def download_leaderboard(ctx: Ctx, req) -> Redirect:
    """The whole public leaderboard as Kaggle gives it: ``<competition>.zip`` holding
    ``<competition>-publicleaderboard.csv`` (TeamId, TeamName, SubmissionDate, Score)."""
    comp = find(ctx, req.competition_name)
    lines = ["TeamId,TeamName,SubmissionDate,Score"]
    lines += [f"{_team_id(owner)},{owner},{utc(created).strftime('%Y-%m-%d %H:%M:%S')},{score:.5f}"
              for owner, score, created in leaderboard(ctx, comp)]
    name = f"{comp['slug']}-publicleaderboard.csv"
    folder = ctx.store.root / "cache" / "competitions" / comp["slug"]
    folder.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    csv_path = folder / f"leaderboard-{hashlib.sha256(text.encode()).hexdigest()[:16]}.csv"
    if not csv_path.exists():  # named by its content: a changed leaderboard is another file (and archive)
        tmp = csv_path.with_name(csv_path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(csv_path)
    archive = bundle(ctx.store, Pack("competitions", (comp["slug"],), "leaderboard",
                                     file_members([(name, csv_path)])))
    return Redirect(transfer.signed_url(ctx.store, ctx.base_url, archive, f"{comp['slug']}.zip",
                                        Grant("leaderboard", comp["id"], ctx.user or "")))
