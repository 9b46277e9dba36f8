"""State of the local Kaggle: SQLite for records, content-addressed files for bytes.

Layout under the data dir::

    kaggle.sqlite3              records (datasets, models, kernels, versions, uploads, submissions)
    blobs/sha256/ab/<sha256>    every uploaded file, once per content (read-only)
    uploads/<token>.part        bytes of an unfinished resumable upload
    cache/<kind>/<owner>/<slug>/<key>.zip   archives built for downloads, named by a digest of what they pack
                                (rebuildable; a resource's folder goes with its delete: kagflow.local.server.archives)
    competitions/<slug>/        hidden solution.csv of a local competition
    runs/<owner>/<slug>/v<N>/   kernel sandboxes: input/, working/ (the output), temp/, log.json, .kagflow/
    runs/<owner>/<slug>/submission-<id>/   a code submission's re-run on the hidden test set
    secret                      signs download URLs
    server.pid, server.port, server.log   written by a background server (kagflow.local.control)

Row ids are never reused (AUTOINCREMENT; older data dirs are migrated on open), so an id in a signed link or a
client's state never comes to name another user's resource after a delete. Versions are numbered 1, 2, ... per
parent. A version's files are rows naming blobs, so a version whose files did not change costs no new bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

DATABASE = "kaggle.sqlite3"  # in the data dir: every record
CHUNK = 1 << 20
UPLOAD_EXPIRY_S = 6 * 24 * 3600  # the official client gives up resuming after 6 days

SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
  token TEXT PRIMARY KEY, owner TEXT, name TEXT, type TEXT, content_length INTEGER,
  sha256 TEXT, created REAL);
CREATE TABLE IF NOT EXISTS blobs (sha256 TEXT PRIMARY KEY, size INTEGER);
CREATE TABLE IF NOT EXISTS files (
  set_kind TEXT, set_id INTEGER, name TEXT, sha256 TEXT, size INTEGER, description TEXT, created REAL,
  PRIMARY KEY (set_kind, set_id, name));
CREATE TABLE IF NOT EXISTS datasets (
  id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT, slug TEXT, title TEXT, subtitle TEXT, description TEXT,
  license_name TEXT, is_private INTEGER, created REAL, UNIQUE (owner, slug));
CREATE TABLE IF NOT EXISTS dataset_versions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, dataset_id INTEGER, number INTEGER, notes TEXT, ready_at REAL, created REAL,
  UNIQUE (dataset_id, number));
CREATE TABLE IF NOT EXISTS models (
  id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT, slug TEXT, title TEXT, subtitle TEXT, description TEXT,
  is_private INTEGER, publish_time TEXT, provenance TEXT, created REAL, UNIQUE (owner, slug));
CREATE TABLE IF NOT EXISTS model_instances (
  id INTEGER PRIMARY KEY AUTOINCREMENT, model_id INTEGER, framework TEXT, slug TEXT, license_name TEXT, overview TEXT,
  usage TEXT, fine_tunable INTEGER, training_data TEXT, instance_type TEXT, created REAL,
  UNIQUE (model_id, framework, slug));
CREATE TABLE IF NOT EXISTS model_versions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id INTEGER, number INTEGER, notes TEXT, ready_at REAL, created REAL,
  UNIQUE (instance_id, number));
CREATE TABLE IF NOT EXISTS kernels (
  id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT, slug TEXT, title TEXT, language TEXT, kernel_type TEXT,
  is_private INTEGER, created REAL, UNIQUE (owner, slug));
CREATE TABLE IF NOT EXISTS kernel_versions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, kernel_id INTEGER, number INTEGER, source TEXT, settings TEXT, status TEXT,
  failure TEXT, created REAL, started REAL, finished REAL, UNIQUE (kernel_id, number));
CREATE TABLE IF NOT EXISTS competitions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, slug TEXT UNIQUE, title TEXT, metric TEXT, created REAL);
CREATE TABLE IF NOT EXISTS submissions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, competition TEXT, owner TEXT, kernel_version_id INTEGER, file_name TEXT,
  description TEXT, status TEXT, public_score TEXT, error TEXT, created REAL, blob_sha TEXT);
CREATE TABLE IF NOT EXISTS rules_accepted (
  competition TEXT, username TEXT, accepted REAL, PRIMARY KEY (competition, username));
"""
# Columns added after the first release: (table, column, declaration); added to older data dirs on open.
COLUMNS = (("competitions", "kernels_only", "INTEGER DEFAULT 1"),
           ("submissions", "progress", "TEXT DEFAULT ''"),
           ("competitions", "category", "TEXT DEFAULT 'featured'"),
           ("datasets", "tags", "TEXT DEFAULT '[]'"),
           ("competitions", "synthetic", "INTEGER DEFAULT 0"),  # made by kagflow's generator (install_competition)
           ("model_instances", "base_model", "TEXT DEFAULT ''"))  # baseModelInstance: owner/model/framework/instance


class Store:
    """Thread-safe access to one data dir (one SQLite connection behind a lock)."""

    def __init__(self, data_dir: os.PathLike | str):
        self.root = Path(data_dir).resolve()
        for sub in ("blobs/sha256", "uploads", "cache", "competitions", "runs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.root / DATABASE, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        for table, column, decl in COLUMNS:
            if column not in {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        self._never_reuse_ids()
        self.secret = self._load_secret()
        self.sweep()

    def _never_reuse_ids(self) -> None:
        """Rebuild a table of an older data dir whose ``id`` lacks AUTOINCREMENT (SQLite then hands a deleted
        highest id to the next row), keeping its rows, ids and added columns."""
        plain = "id INTEGER PRIMARY KEY,"
        for (table,) in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
            with self.tx() as db:
                sql = db.execute("SELECT sql FROM sqlite_master WHERE name=?", (table,)).fetchone()[0]
                if plain not in sql:
                    continue
                db.execute(sql.replace(plain, "id INTEGER PRIMARY KEY AUTOINCREMENT,", 1)
                           .replace(f"TABLE {table} (", f"TABLE {table}__new (", 1))
                db.execute(f"INSERT INTO {table}__new SELECT * FROM {table}")
                db.execute(f"DROP TABLE {table}")
                db.execute(f"ALTER TABLE {table}__new RENAME TO {table}")

    def sweep(self, upload_max_age_s: float = UPLOAD_EXPIRY_S) -> None:
        """Drop leftovers: expired upload parts (and their sessions), half-built archives, half copies."""
        cutoff = time.time() - upload_max_age_s
        for part in (self.root / "uploads").glob("*.part"):
            limit = time.time() - 3600 if part.name.startswith("copy-") else cutoff
            if part.stat().st_mtime < limit:
                part.unlink(missing_ok=True)
        for tmp in (self.root / "cache").rglob("*.tmp"):
            tmp.unlink(missing_ok=True)
        for legacy in (self.root / "cache").glob("*/*"):  # id-named archives of older releases (cache/<kind>/<id>.zip)
            if legacy.is_file():
                legacy.unlink(missing_ok=True)
        with self._lock:
            self._db.execute("DELETE FROM uploads WHERE sha256 IS NULL AND created < ?", (cutoff,))

    def _load_secret(self) -> bytes:
        path = self.root / "secret"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(secrets.token_bytes(32))
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        return path.read_bytes()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ sql helpers

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (serialised with every other access)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def one(self, sql: str, *args) -> Optional[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def all(self, sql: str, *args) -> list:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def run(self, sql: str, *args) -> int:
        with self._lock:
            return self._db.execute(sql, args).lastrowid

    # ------------------------------------------------------------------ blobs

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / "sha256" / sha256[:2] / sha256

    def ingest(self, part: Path, sha256: Optional[str] = None) -> tuple[str, int]:
        """Move a finished file into the blob store (hashing it if ``sha256`` is unknown)."""
        if sha256 is None:
            sha256 = hash_file(part)
        size = part.stat().st_size
        target = self.blob_path(sha256)
        if target.exists():
            part.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(part, 0o444)
            os.replace(part, target)
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?)", (sha256, size))
        return sha256, size

    def ingest_file(self, source: Path) -> tuple[str, int]:
        """Copy a local file into the blob store (used to install competitions)."""
        tmp = self.root / "uploads" / f"copy-{secrets.token_hex(8)}.part"
        digest = hashlib.sha256()
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
        return self.ingest(tmp, digest.hexdigest())

    # ------------------------------------------------------------------ file sets

    def set_files(self, kind: str, set_id: int, files: list[tuple[str, str, int, str]]) -> None:
        """Record ``[(name, sha256, size, description)]`` as the files of one version."""
        now = time.time()
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 [(kind, set_id, n, s, z, d, now) for n, s, z, d in files])

    def files_of(self, kind: str, set_id: int) -> list[sqlite3.Row]:
        return self.all("SELECT * FROM files WHERE set_kind=? AND set_id=? ORDER BY name", kind, set_id)


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dumps(value) -> str:
    return json.dumps(value, sort_keys=True)
