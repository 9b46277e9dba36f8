"""Who may see what, and which sources a kernel may mount: Kaggle's rules, in one place.

A private dataset, model or kernel is visible to its owner only (others get "not found", as on
Kaggle). A kernel's sources are resolved for the kernel's owner: one that names nothing, or
something that owner cannot see, is *invalid* (SaveKernel returns it in ``invalid_*_sources`` and
the run does not mount it). The same functions decide at push time and again at run time.

A signed download link carries a :class:`Grant` (what it serves, and to whom it was issued); every read of the
link asks :func:`readable` again, so a link stops working once its resource is deleted or made private.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kagflow.errors import NamingError
from kagflow.local.server.competition import rules_accepted
from kagflow.local.server.store import Store
from kagflow.rules import slugs

KINDS = ("dataset", "competition", "kernel", "model")


def visible(row, user: Optional[str]) -> bool:
    """A dataset/model/kernel row exists and ``user`` may see it (public, or theirs)."""
    return row is not None and (not row["is_private"] or row["owner"] == user)


@dataclass(frozen=True)
class Grant:
    """What a signed link serves: one version (``kind`` a file-set kind, ``set_id`` its row id; ids are never
    reused), issued to ``user`` ("" for an anonymous caller)."""
    kind: str
    set_id: int
    user: str


# The resource row (owner, is_private) that decides who may read a version of each kind.
_OWNER_SQL = {
    "dataset_version": "SELECT d.owner, d.is_private FROM datasets d JOIN dataset_versions v ON v.dataset_id = d.id "
                       "WHERE v.id=?",
    "model_version": "SELECT m.owner, m.is_private FROM models m JOIN model_instances i ON i.model_id = m.id "
                     "JOIN model_versions v ON v.instance_id = i.id WHERE v.id=?",
    "kernel_version": "SELECT k.owner, k.is_private FROM kernels k JOIN kernel_versions v ON v.kernel_id = k.id "
                      "WHERE v.id=?",
}


def readable(store: Store, grant: Grant) -> bool:
    """``grant.user`` may still read what ``grant`` names: it exists and is visible to them (a competition's files:
    the competition exists and they accepted its rules; its leaderboard: the competition exists)."""
    if grant.kind == "leaderboard":
        return store.one("SELECT 1 FROM competitions WHERE id=?", grant.set_id) is not None
    if grant.kind == "competition":
        row = store.one("SELECT slug FROM competitions WHERE id=?", grant.set_id)
        return row is not None and rules_accepted(store, row["slug"], grant.user)
    sql = _OWNER_SQL.get(grant.kind)
    return sql is not None and visible(store.one(sql, grant.set_id), grant.user or None)


@dataclass(frozen=True)
class Mount:
    """One resolved source: the files to place and where (see :func:`kagflow.local.run.mounts.mount`)."""
    new_layout: tuple
    classic: tuple
    set_kind: str = ""     # a stored file set (dataset/model version, competition) ...
    set_id: int = 0
    run: tuple = ()        # ... or a kernel run's output: (owner, slug, version number)


def dataset_source(store: Store, user: str, ref: str) -> Optional[Mount]:
    """``owner/slug`` (its latest version) or ``owner/slug/N`` (version N, pinned), mounted at the same path."""
    parts = ref.split("/")
    if len(parts) not in (2, 3) or (len(parts) == 3 and not parts[2].isdigit()):
        return None
    row = store.one("SELECT * FROM datasets WHERE owner=? AND slug=?", *parts[:2])
    if not visible(row, user):
        return None
    if len(parts) == 3:
        version = store.one("SELECT id FROM dataset_versions WHERE dataset_id=? AND number=?", row["id"],
                            int(parts[2]))
    else:
        version = store.one("SELECT id FROM dataset_versions WHERE dataset_id=? ORDER BY number DESC LIMIT 1",
                            row["id"])
    return Mount(("datasets", *parts[:2]), (parts[1],), "dataset_version", version["id"]) if version else None


def model_source(store: Store, user: str, ref: str) -> Optional[Mount]:
    try:
        handle = slugs.ModelInstanceVersionHandle.parse(ref)
        fw_enum = "MODEL_FRAMEWORK_" + slugs.framework_enum(handle.framework)
        fw = slugs.framework_source_name(handle.framework)
    except NamingError:
        return None
    model = store.one("SELECT * FROM models WHERE owner=? AND slug=?", handle.owner, handle.model)
    if not visible(model, user):
        return None
    version = store.one("SELECT v.id FROM model_versions v JOIN model_instances i ON i.id = v.instance_id "
                        "WHERE i.model_id=? AND i.framework=? AND i.slug=? AND v.number=?",
                        model["id"], fw_enum, handle.instance, handle.version)
    if version is None:
        return None
    number = str(handle.version)
    return Mount(("models", handle.owner, handle.model, fw, handle.instance, number),
                 (handle.model, fw, handle.instance, number), "model_version", version["id"])


def competition_source(store: Store, user: str, slug: str, *, hidden: bool = False) -> Optional[Mount]:
    """The competition's public files; with ``hidden`` (a code submission's re-run) the hidden test set in their
    place."""
    row = store.one("SELECT id FROM competitions WHERE slug=?", slug)
    if row is None:
        return None
    kind = "competition"
    if hidden and store.one("SELECT 1 FROM files WHERE set_kind='competition_rerun' AND set_id=?", row["id"]):
        kind = "competition_rerun"  # (a competition installed before hidden sets existed has none)
    return Mount(("competitions", slug), (slug,), kind, row["id"])


def kernel_source(store: Store, user: str, ref: str, *, need_output: bool = True) -> Optional[Mount]:
    """A visible kernel; with ``need_output`` its latest COMPLETE version's output (None if it has none)."""
    parts = ref.split("/")
    if len(parts) != 2:
        return None
    row = store.one("SELECT * FROM kernels WHERE owner=? AND slug=?", *parts)
    if not visible(row, user):
        return None
    done = store.one("SELECT number FROM kernel_versions WHERE kernel_id=? AND status='COMPLETE' ORDER BY number "
                     "DESC LIMIT 1", row["id"])
    if done is None and need_output:
        return None
    return Mount(("notebooks", *parts), (parts[1],), run=(parts[0], parts[1], done["number"] if done else 0))


RESOLVERS = {"dataset": dataset_source, "competition": competition_source, "kernel": kernel_source,
             "model": model_source}


def check_sources(store: Store, user: str, sources: dict) -> tuple[dict, dict]:
    """Split ``{"dataset": [...], ...}`` into (valid, invalid) for a kernel owned by ``user`` (push time)."""
    valid = {kind: [] for kind in KINDS}
    invalid = {kind: [] for kind in KINDS}
    for kind in KINDS:
        for ref in sources.get(kind) or []:
            kwargs = {"need_output": False} if kind == "kernel" else {}
            ok = isinstance(ref, str) and RESOLVERS[kind](store, user, ref, **kwargs) is not None
            (valid if ok else invalid)[kind].append(ref)
    return valid, invalid
