"""Submit to a competition (a code-competition kernel version, or a file) and wait for the score."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from kagflow.errors import HubError
from kagflow.hub.gateway import Gateway, epoch_seconds
from kagflow.hub.retry import poll_until
from kagflow.rules import slugs


@dataclass(frozen=True)
class Submission:
    ref: str
    description: str
    status: str
    public_score: Optional[float]
    error: str = ""
    date: Optional[float] = None  # when it was made, seconds since the epoch


def submission_tag(handle: slugs.KernelHandle, version: int) -> str:
    return f"[kagflow {handle}/v{version}]"


def list_submissions(gw: Gateway, competition: str) -> list[Submission]:
    items = gw.call(lambda: gw.api.competition_submissions(competition), what="list submissions",
                    handle=competition) or []
    out = []
    for s in items:
        if s is None:
            continue
        status = getattr(s.status, "name", str(s.status)).replace("SUBMISSION_STATUS_", "").upper()
        score = s.public_score
        try:
            score = float(score) if score not in (None, "") else None
        except (TypeError, ValueError):
            score = None
        out.append(Submission(str(s.ref), s.description or "", status, score, s.error_description or "",
                              epoch_seconds(s.date)))
    return out


def submit_kernel(gw: Gateway, competition: str, handle: slugs.KernelHandle, version: int, *,
                  file_name: str = "submission.csv", message: str = "") -> Submission:
    """Submit kernel version ``version`` once: an earlier submission of it is found and reused."""
    tag = submission_tag(handle, version)

    def existing() -> Optional[Submission]:
        return next((s for s in list_submissions(gw, competition) if tag in s.description), None)

    found = existing()
    if found:
        gw.log(f"{handle} version {version} was already submitted ({found.status}): not submitted again")
        return found
    description = f"{message} {tag}".strip()
    gw.call(lambda: gw.api.competition_submit_code(file_name, description, competition=competition,
                                                   kernel=str(handle), kernel_version=version, quiet=True),
            what="submit kernel", handle=f"{handle}/{version}", before_retry=existing)
    return gw.settle(existing, what="list submissions", handle=f"{competition}: {handle} version {version}",
                     ready=lambda sub: sub is not None, waiting="not listed yet")


def submit_file(gw: Gateway, competition: str, path: Path, *, message: str = "") -> Submission:
    """File competitions: upload ``path`` as a submission."""
    tag = f"[kagflow file {Path(path).name}]"
    gw.call(lambda: gw.api.competition_submit(str(path), f"{message} {tag}".strip(), competition, quiet=True),
            what="submit file", handle=competition)
    return gw.settle(lambda: next((s for s in list_submissions(gw, competition) if tag in s.description), None),
                     what="list submissions", handle=f"{competition}: {Path(path).name}",
                     ready=lambda sub: sub is not None, waiting="not listed yet")


def wait_score(gw: Gateway, competition: str, ref: str, *, timeout: float = 3 * 3600,
               sleep: Callable[[float], None] = time.sleep,
               on_poll: Optional[Callable[[Submission, float], None]] = None) -> Submission:
    def fetch() -> Submission:
        sub = next((s for s in list_submissions(gw, competition) if s.ref == ref), None)
        if sub is None:
            raise HubError(f"submission {ref} is no longer listed", context=f"competition {competition}")
        return sub

    def timed_out(sub: Submission, elapsed: float) -> HubError:
        return HubError(f"submission {ref} still {sub.status} after {elapsed:.0f}s",
                        context=f"competition {competition}",
                        hint="run `kagflow submit` again later: it finds this submission and waits for its score")

    def shown(sub: Submission, elapsed: float) -> None:
        # while PENDING, the local Kaggle says what its re-run on the hidden test set is doing (Kaggle says nothing)
        if on_poll is not None:
            on_poll(replace(sub, status=f"{sub.status} ({sub.error})") if sub.status == "PENDING" and sub.error
                    else sub, elapsed)

    sub = poll_until(fetch, lambda s: s.status in ("COMPLETE", "ERROR"), timeout=timeout, on_poll=shown,
                     on_timeout=timed_out, sleep=sleep, cap=gw.endpoint.poll_cap)
    if sub.status == "ERROR":
        raise HubError(f"submission {ref} failed: {sub.error or 'no reason given'}",
                       context=f"competition {competition}",
                       hint="fix the notebook's submission.csv (the columns, ids and values the error names: "
                            "those of the competition's sample_submission.csv) and submit again")
    return sub


def submissions_left_today(gw: Gateway, competition: str) -> Optional[int]:
    """How many more submissions the competition takes today (GetSubmissionLimits), None if not told."""
    limits = gw.call(lambda: gw.api.competition_get_submission_limits(competition), what="submission limits",
                     handle=competition)
    left = getattr(limits, "num_allowed_now", None)
    return int(left) if left is not None else None


def submitted_kernel(sub: Submission) -> Optional[tuple[str, int]]:
    """(kernel handle, version) behind a submission kagflow made (its description's tag), else None."""
    import re

    m = re.search(r"\[kagflow ([A-Za-z0-9_-]+/[A-Za-z0-9_-]+)/v(\d+)\]", sub.description)
    return (m.group(1), int(m.group(2))) if m else None


@dataclass(frozen=True)
class CompetitionInfo:
    slug: str
    title: str
    entered: bool  # the caller accepted its rules (GetCompetition's user_has_entered)
    kernels_only: bool


def competition_info(gw: Gateway, competition: str) -> CompetitionInfo:
    """The competition as the caller sees it (GetCompetition); NotFoundError if there is none of that slug."""
    from kagglesdk.competitions.types.competition_api_service import ApiGetCompetitionRequest

    def get():
        with gw.api.build_kaggle_client() as kaggle:
            request = ApiGetCompetitionRequest()
            request.competition_name = competition
            return kaggle.competitions.competition_api_client.get_competition(request)

    item = gw.call(get, what="get competition", handle=competition)
    return CompetitionInfo(competition, item.title or competition, bool(item.user_has_entered),
                           bool(item.is_kernels_submissions_only))
def competition_file_names(gw: Gateway, competition: str) -> list[str]:
    """The names of the competition's data files (ListDataFiles, every page); NotFoundError (a HubError) when
    there is no such competition."""
    names: list[str] = []
    token = None
    while True:
        response = gw.call(lambda: gw.api.competition_list_files(competition, page_token=token, page_size=200),
                           what="list competition files", handle=competition)
        names += [f.name for f in (getattr(response, "files", None) or [])]
        token = getattr(response, "next_page_token", None)
        if not token:
            return names


def competition_slugs(gw: Gateway, search: str) -> list[str]:
    """Slugs of the competitions a search for ``search`` finds (what a did-you-mean proposes)."""
    response = gw.call(lambda: gw.api.competitions_list(search=search, page_size=50), what="list competitions")
    found = getattr(response, "competitions", None) or []
    return [str(getattr(c, "ref", "") or "").rstrip("/").rsplit("/", 1)[-1] for c in found if getattr(c, "ref", "")]
