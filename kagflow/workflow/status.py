"""A competitor's day at a glance: what is published, how each kernel's latest run went, the
submissions with their scores (and which kernel and adapter versions made them), submissions left
today and the week's GPU quota. Read from the target through the hub; the state file adds the
parameters each kernel version was pushed with.

The hub (the official client) is imported inside the verbs that talk to it: the CLI's start stays fast.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Optional

from kagflow.errors import HubError
from kagflow.project.config import ADAPTER_MODEL, MODELS
from kagflow.rules import slugs
from kagflow.rules.metrics import MetricFacts


@dataclass(frozen=True)
class KernelLine:
    name: str
    handle: str
    version: Optional[int]
    status: str  # COMPLETE | RUNNING | ERROR | ... | "not pushed"
    run_seconds: Optional[float] = None
    accelerator: str = ""
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SubmissionLine:
    ref: str
    status: str
    score: Optional[float]
    date: Optional[float]
    kernel: str = ""  # owner/slug behind it ("" for a file submission)
    kernel_version: Optional[int] = None
    adapters: tuple[str, ...] = ()  # adapter model sources (owner/model/framework/instance/version) it used
    description: str = ""


@dataclass(frozen=True)
class QuotaLine:
    used_s: float
    allowed_s: float
    left_s: float
    refresh: Optional[float]


@dataclass
class DayStatus:
    target: str
    competition: str
    models: dict = field(default_factory=dict)  # base_model/adapter_model -> source (with version)
    wheels: str = ""
    kernels: list[KernelLine] = field(default_factory=list)
    submissions: list[SubmissionLine] = field(default_factory=list)
    best: Optional[SubmissionLine] = None
    metric: str = ""  # metric_words of [data] metric
    submissions_left_today: Optional[int] = None
    gpu_quota: Optional[QuotaLine] = None

    def to_json(self) -> dict:
        return asdict(self)


def best_of(subs: list[SubmissionLine], facts: MetricFacts) -> Optional[SubmissionLine]:
    """The best score among the scored submissions by the metric's direction ([data] metric: the lowest log loss,
    the highest accuracy); the earliest of equals."""
    return facts.best([s for s in subs if s.status == "COMPLETE"], lambda s: s.score)


def metric_words(facts: MetricFacts) -> str:
    """``log loss, lower is better``: what a score is, wherever one is shown."""
    return f"{facts.display}, {facts.direction}"


def kernel_lines(session) -> list[KernelLine]:
    from kagflow.hub.kernels import kernel_version_info, run_seconds

    gw, state, config = session.gateway, session.state, session.config
    out = []
    for name in sorted(config.kernels):
        handle = config.kernel_handle(name)
        info = kernel_version_info(gw, handle)
        if info is None or not info.version:
            out.append(KernelLine(name, str(handle), None, "not pushed"))
            continue
        seconds = run_seconds(gw, handle, info.version)
        if seconds is None and info.started and info.status == "RUNNING":
            seconds = time.time() - info.started
        recorded = state.version(name, info.version)
        out.append(KernelLine(name, str(handle), info.version, info.status, seconds,
                              info.machine_shape or recorded.accelerator, dict(recorded.params)))
    return out


def submission_lines(session, *, limit: Optional[int] = None) -> list[SubmissionLine]:
    """The competition's submissions, newest first, each with the kernel version and adapters behind it."""
    from kagflow.hub.competitions import list_submissions, submitted_kernel
    from kagflow.hub.kernels import kernel_version_info

    gw, config = session.gateway, session.config
    adapter_prefix = str(config.instance_handle(ADAPTER_MODEL)).lower() + "/"
    subs = list_submissions(gw, config.project.competition)
    subs = subs[:limit] if limit else subs
    seen: dict = {}
    out = []
    for sub in subs:
        behind = submitted_kernel(sub)
        adapters: tuple[str, ...] = ()
        if behind is not None:
            if behind not in seen:
                info = kernel_version_info(gw, slugs.KernelHandle.parse(behind[0]), behind[1])
                seen[behind] = tuple(s for s in (info.model_sources if info else ())
                                     if s.lower().startswith(adapter_prefix))
            adapters = seen[behind]
        out.append(SubmissionLine(sub.ref, sub.status, sub.public_score, sub.date,
                                  behind[0] if behind else "", behind[1] if behind else None, adapters,
                                  sub.description))
    return out


def day_status(session, *, last: int = 5) -> DayStatus:
    """Everything `kagflow status` shows, for the session's target."""
    from kagflow.hub.competitions import submissions_left_today
    from kagflow.hub.kernels import accelerator_quota

    gw, config = session.gateway, session.config
    status = DayStatus(session.endpoint.describe(), config.project.competition)
    for which in MODELS:
        status.models[which] = config.model_source(which) or "not published"
    wheels = session.state.wheels
    status.wheels = (f"{wheels.handle}/{wheels.version}" if wheels.version else wheels.handle) if wheels else \
        "not pushed"
    status.kernels = kernel_lines(session)
    every = submission_lines(session)
    status.submissions = every[:last]
    status.best = best_of(every, config.data.facts)
    status.metric = metric_words(config.data.facts)
    try:
        status.submissions_left_today = submissions_left_today(gw, config.project.competition)
    except HubError as e:
        gw.log(f"submissions left today unknown: {e.message}")
    try:
        gpu = accelerator_quota(gw).get("GPU")
    except HubError as e:
        gw.log(f"GPU quota unknown: {e.message}")
        gpu = None
    if gpu is not None:
        status.gpu_quota = QuotaLine(gpu.used, gpu.allowed, gpu.left, gpu.refresh)
    return status


# --------------------------------------------------------------------------- text

def _when(ts: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if ts else "-"


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    minutes, s = divmod(int(round(seconds)), 60)
    h, m = divmod(minutes, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _score(score: Optional[float]) -> str:
    return f"{score:.4f}" if score is not None else "-"


def submission_text(sub: SubmissionLine) -> str:
    behind = f"{sub.kernel} v{sub.kernel_version}" if sub.kernel else "file"
    adapters = ", ".join("v" + a.rsplit("/", 1)[-1] for a in sub.adapters) or "-"
    return f"{sub.ref:>6}  {_when(sub.date)}  {sub.status:<8}  {_score(sub.score):>7}  {behind}  adapter {adapters}"


def status_lines(status: DayStatus) -> list[str]:
    out = [f"kagflow status ({status.target}), competition {status.competition}"]
    for which, source in status.models.items():
        out.append(f"  {which.replace('_', ' ')}: {source}")
    out.append(f"  wheels: {status.wheels}")
    out.append("  kernels:")
    for k in status.kernels:
        version = f"v{k.version}" if k.version else "-"
        params = " " + " ".join(f"{key}={value}" for key, value in k.params.items()) if k.params else ""
        out.append(f"    {k.name:<8} {version:<4} {k.status:<10} ran {_duration(k.run_seconds)}"
                   f"{'  ' + k.accelerator if k.accelerator else ''}{params}")
    out.append(f"  submissions (last {len(status.submissions)}):" if status.submissions else "  submissions: none")
    out.extend("    " + submission_text(s) for s in status.submissions)
    best = status.best
    out.append(f"  best: {_score(best.score)} ({best.ref}, {best.kernel} v{best.kernel_version}; {status.metric})"
               if status.best else "  best: -")
    left = status.submissions_left_today
    out.append(f"  submissions left today: {left if left is not None else '-'}")
    q = status.gpu_quota
    out.append(f"  GPU quota: {q.used_s / 3600:.2f} h used, {q.left_s / 3600:.2f} h left of {q.allowed_s / 3600:.2f} h"
               f" (renews {_when(q.refresh)} UTC)" if q else "  GPU quota: -")
    return out
