"""Kaggle naming rules: one function per rule, frozen handles with parse and ``__str__``.

Every slug, id and handle kagflow writes goes through this module, so a title always
slugifies to its id and a model source always has the same framework casing.

Sources for the rules (checked against kaggle 2.2.5, ``kaggle/api/kaggle_api_extended.py``):
- ``slugify`` is python-slugify's default, exactly what ``kernels_push`` compares with the id.
- datasets: slug and title 6..50 characters (``dataset_create_new``).
- kernels: title and slug at least 5 characters (``kernels_push``/``validate_kernel_string``);
  50 is the longest kernel title the site accepts (guess, kept as the limit).
- models: kaggle 2.2.5's ``model_create_new`` allows ``^[a-z0-9]+(?:-[a-z0-9]+)*$`` in a model slug
  (``_validate_slug_syntax``, kaggle-cli #1134) and checks nothing in an instance slug; Kaggle itself accepts
  more in both (:data:`MODEL_SLUG_RE`): underscores (kagglehub's CI creates ``<user>/model_<uuid>`` on Kaggle;
  ``keras/bert/keras/bert_tiny_en_uncased`` exists) and dots (``qwen-lm/qwen2.5``, ``metaresearch/llama-3.1``,
  ``.../transformers/1.5b-instruct``), and titles under 5 characters (``keras/bert`` is titled "BERT").
  Handles of models, which may name anyone's, follow Kaggle's rule; the slugs kagflow derives from its own
  titles are hyphenated (:func:`model_slug`), so the official client's narrower check passes them too.
  Owners may hold underscores (``_validate_slug_syntax(allow_underscore=True)``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from slugify import slugify as _python_slugify

from kagflow.errors import NamingError

SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")  # whole strings only: always .fullmatch ("$" passes "x\n")
OWNER_RE = re.compile(r"[a-z0-9]+(?:[_-][a-z0-9]+)*")
MODEL_SLUG_RE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")  # what Kaggle accepts in model and instance slugs
COMPETITION_RE = SLUG_RE

DATASET_SLUG_MIN, DATASET_SLUG_MAX = 6, 50
DATASET_TITLE_MIN, DATASET_TITLE_MAX = 6, 50
KERNEL_TITLE_MIN, KERNEL_TITLE_MAX = 5, 50
KERNEL_SLUG_MIN = 5
MODEL_SLUG_MAX = 50
MODEL_TITLE_MIN, MODEL_TITLE_MAX = 1, 50  # Kaggle hosts "BERT" (keras/bert); 50 is a guess kept as the limit


# --------------------------------------------------------------------------- slug rules

def slugify(title: str) -> str:
    """The slug Kaggle derives from a title (python-slugify defaults, as the official client)."""
    return _python_slugify(title)


def title_matches_slug(title: str, slug: str) -> bool:
    """The check ``kaggle kernels push`` makes: ``slugify(title) == slug`` (slug compared lowercased)."""
    return slugify(title) == slug.lower()


def check_slug(slug: str, *, what: str = "slug", min_len: int = 1, max_len: int = 50) -> str:
    """Return ``slug`` if it is a valid Kaggle slug, else raise with a corrected suggestion."""
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug) or not (min_len <= len(slug) <= max_len):
        suggestion = suggest_slug(slug if isinstance(slug, str) else str(slug), min_len=min_len, max_len=max_len)
        raise NamingError(
            f"invalid {what} {slug!r}",
            context=f"a {what} is {min_len}..{max_len} characters of a-z, 0-9 and single hyphens "
                    "(no leading, trailing or double hyphen)",
            hint=f"use {suggestion!r}" if suggestion else "choose a longer name",
        )
    return slug


def check_model_slug(slug: str, *, what: str = "model slug") -> str:
    """Return ``slug`` if Kaggle accepts it as a model or model instance slug (:data:`MODEL_SLUG_RE`: lowercase
    letters and digits, single ``-``, ``_`` or ``.`` inside, at most :data:`MODEL_SLUG_MAX`), else raise with the
    hyphenated form kagflow would write."""
    if not isinstance(slug, str) or not MODEL_SLUG_RE.fullmatch(slug) or len(slug) > MODEL_SLUG_MAX:
        suggestion = suggest_slug(slug if isinstance(slug, str) else str(slug), max_len=MODEL_SLUG_MAX)
        raise NamingError(
            f"invalid {what} {slug!r}",
            context=f"a {what} is 1..{MODEL_SLUG_MAX} characters of a-z, 0-9 and single '-', '_' or '.' inside",
            hint=f"use {suggestion!r}" if suggestion else "choose a longer name",
        )
    return slug


def check_owner(owner: str) -> str:
    """Return ``owner`` (a Kaggle username) if valid; usernames may hold underscores."""
    if not isinstance(owner, str) or not OWNER_RE.fullmatch(owner):
        suggestion = re.sub(r"[^a-z0-9_-]+", "-", str(owner).lower()).strip("-_")
        raise NamingError(
            f"invalid Kaggle username {owner!r}",
            context="a username is lowercase letters, digits, single '-' or '_' inside",
            hint=f"use {suggestion!r}" if suggestion else "set username in kagflow.toml",
        )
    return owner


def suggest_slug(text: str, *, min_len: int = 1, max_len: int = 50) -> str:
    """A valid slug close to ``text``: slugified, cut at a hyphen to ``max_len``, padded to ``min_len``."""
    slug = slugify(text)
    if len(slug) > max_len:
        slug = slug[:max_len]
        if "-" in slug[max_len // 2:]:
            slug = slug[: slug.rfind("-")]
        slug = slug.strip("-")
    if slug and len(slug) < min_len:
        slug = (slug + "-" + "x" * min_len)[:min_len].strip("-")
        while len(slug) < min_len:
            slug += "x"
    return slug


def title_to_slug(title: str, *, what: str, min_len: int, max_len: int,
                  title_min: int, title_max: int) -> str:
    """Check a title's length and that its slug is valid; return the slug."""
    if not isinstance(title, str) or not (title_min <= len(title) <= title_max):
        shown = title if isinstance(title, str) else repr(title)
        raise NamingError(
            f"{what} title {shown!r} is {len(shown)} characters; Kaggle accepts {title_min}..{title_max}",
            hint=f"use {suggest_slug(shown, min_len=title_min, max_len=title_max)!r}",
        )
    slug = slugify(title)
    check_slug(slug, what=f"{what} slug (from title {title!r})", min_len=min_len, max_len=max_len)
    return slug


def dataset_slug(title: str) -> str:
    """Slug of a dataset titled ``title`` (6..50 characters each)."""
    return title_to_slug(title, what="dataset", min_len=DATASET_SLUG_MIN, max_len=DATASET_SLUG_MAX,
                         title_min=DATASET_TITLE_MIN, title_max=DATASET_TITLE_MAX)


def kernel_slug(title: str) -> str:
    """Slug of a kernel titled ``title`` (title 5..50 characters, slug at least 5)."""
    return title_to_slug(title, what="kernel", min_len=KERNEL_SLUG_MIN, max_len=KERNEL_TITLE_MAX,
                         title_min=KERNEL_TITLE_MIN, title_max=KERNEL_TITLE_MAX)


def model_slug(title: str) -> str:
    """Slug of a model titled ``title``."""
    return title_to_slug(title, what="model", min_len=1, max_len=MODEL_SLUG_MAX,
                         title_min=MODEL_TITLE_MIN, title_max=MODEL_TITLE_MAX)


def check_competition(slug: str) -> str:
    return check_slug(slug, what="competition slug", min_len=1, max_len=80)


# --------------------------------------------------------------------------- frameworks

# Names of kagglesdk's ModelFramework enum, without the MODEL_FRAMEWORK_ prefix.
FRAMEWORKS = (
    "TENSOR_FLOW_1", "TENSOR_FLOW_2", "TF_LITE", "TF_JS", "PY_TORCH", "JAX", "FLAX", "PAX",
    "MAX_TEXT", "GEMMA_CPP", "GGML", "GGUF", "CORAL", "SCIKIT_LEARN", "MXNET", "ONNX", "KERAS",
    "TRANSFORMERS", "API", "OTHER", "TENSOR_RT_LLM", "TRITON", "VLLM",
)
_FRAMEWORK_KEYS = {name.replace("_", "").lower(): name for name in FRAMEWORKS}


def framework_enum(framework: str) -> str:
    """Canonical enum name of a framework given in any casing, with or without underscores.

    ``"Transformers"``, ``"transformers"``, ``"TRANSFORMERS"`` → ``"TRANSFORMERS"``;
    ``"pyTorch"``, ``"pytorch"``, ``"PY_TORCH"`` → ``"PY_TORCH"``.
    """
    key = re.sub(r"[\s_-]+", "", str(framework)).lower()
    key = key.removeprefix("modelframework")
    if key not in _FRAMEWORK_KEYS:
        close = [v for k, v in _FRAMEWORK_KEYS.items() if k.startswith(key[:3])] if key else []
        raise NamingError(
            f"unknown model framework {framework!r}",
            context="Kaggle frameworks: " + ", ".join(framework_metadata_name(f) for f in FRAMEWORKS),
            hint=(f"use {framework_metadata_name(close[0])!r}" if close
                  else "use 'transformers' for Hugging Face folders"),
        )
    return _FRAMEWORK_KEYS[key]


def framework_metadata_name(framework: str) -> str:
    """The camelCase form model-instance-metadata.json carries (``transformers``, ``pyTorch``, ``tensorFlow2``)."""
    words = framework_enum(framework).lower().split("_")
    return words[0] + "".join(w.capitalize() for w in words[1:])


def framework_source_name(framework: str) -> str:
    """The form used in kernel ``model_sources``, handles and mount paths: all lowercase, no underscores.

    The one choice for every handle kagflow writes. Kaggle mounts models at
    ``/kaggle/input/<model>/<framework>/<instance>/<version>`` with this lowercase form, and its
    API resolves handles case-insensitively (the seed's ``Transformers`` also worked).
    """
    return framework_enum(framework).replace("_", "").lower()


# --------------------------------------------------------------------------- handles

def _parts(text: str, what: str, form: str, counts: tuple[int, ...]) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        raise NamingError(f"empty {what}", hint=f"write it as {form}")
    parts = text.strip().strip("/").split("/")
    if len(parts) not in counts or any(not p for p in parts):
        raise NamingError(f"invalid {what} {text!r}", context=f"expected {form}",
                          hint=f"write it as {form}")
    return parts


def _version(text: str, value: str, what: str, form: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise NamingError(f"invalid version {value!r} in {what} {text!r}",
                          context="versions are whole numbers from 1", hint=f"write it as {form}")
    return int(value)


@dataclass(frozen=True)
class _OwnerSlugHandle:
    """``owner/slug[/version]``: what datasets and kernels share; subclasses set the rules."""

    owner: str
    slug: str
    version: Optional[int] = None

    FORM = "owner/slug[/version]"
    WHAT = "handle"
    URL_PATH = ""
    SLUG_MIN = 1
    SLUG_MAX = 50

    @classmethod
    def parse(cls, text: str):
        parts = _parts(text, cls.WHAT, cls.FORM, (2, 3))
        version = _version(text, parts[2], cls.WHAT, cls.FORM) if len(parts) == 3 else None
        slug = check_slug(parts[1], what=cls.WHAT.replace("handle", "slug"), min_len=cls.SLUG_MIN,
                          max_len=cls.SLUG_MAX)
        return cls(check_owner(parts[0]), slug, version)

    def with_version(self, version: Optional[int]):
        return type(self)(self.owner, self.slug, version)

    def __str__(self) -> str:
        base = f"{self.owner}/{self.slug}"
        return base if self.version is None else f"{base}/{self.version}"

    def to_url(self) -> str:
        return f"https://www.kaggle.com/{self.URL_PATH}/{self.owner}/{self.slug}"


@dataclass(frozen=True)
class DatasetHandle(_OwnerSlugHandle):
    FORM = "owner/dataset-slug[/version]"
    WHAT = "dataset handle"
    URL_PATH = "datasets"


@dataclass(frozen=True)
class KernelHandle(_OwnerSlugHandle):
    FORM = "owner/kernel-slug"
    WHAT = "kernel handle"
    URL_PATH = "code"
    SLUG_MIN = KERNEL_SLUG_MIN
    SLUG_MAX = KERNEL_TITLE_MAX


@dataclass(frozen=True)
class ModelHandle:
    owner: str
    model: str

    FORM = "owner/model-slug"

    @classmethod
    def parse(cls, text: str) -> "ModelHandle":
        parts = _parts(text, "model handle", cls.FORM, (2,))
        return cls(check_owner(parts[0]), check_model_slug(parts[1]))

    def instance(self, framework: str, instance: str) -> "ModelInstanceHandle":
        return ModelInstanceHandle(self.owner, self.model, framework_source_name(framework),
                                   check_model_slug(instance, what="model instance slug"))

    def __str__(self) -> str:
        return f"{self.owner}/{self.model}"

    def to_url(self) -> str:
        return f"https://www.kaggle.com/models/{self.owner}/{self.model}"


@dataclass(frozen=True)
class ModelInstanceHandle:
    owner: str
    model: str
    framework: str  # always the lowercase source form
    instance: str

    FORM = "owner/model-slug/framework/instance-slug"

    @classmethod
    def parse(cls, text: str) -> "ModelInstanceHandle":
        parts = _parts(text, "model instance handle", cls.FORM, (4,))
        return ModelHandle(check_owner(parts[0]), check_model_slug(parts[1])).instance(parts[2], parts[3])

    @property
    def model_handle(self) -> ModelHandle:
        return ModelHandle(self.owner, self.model)

    def version(self, number: int) -> "ModelInstanceVersionHandle":
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise NamingError(f"invalid model version {number!r} for {self}",
                              hint="versions are whole numbers from 1")
        return ModelInstanceVersionHandle(self.owner, self.model, self.framework, self.instance, number)

    def __str__(self) -> str:
        return f"{self.owner}/{self.model}/{self.framework}/{self.instance}"

    def to_url(self) -> str:
        return f"{self.model_handle.to_url()}/{self.framework}/{self.instance}"


@dataclass(frozen=True)
class ModelInstanceVersionHandle:
    owner: str
    model: str
    framework: str
    instance: str
    version: int

    FORM = "owner/model-slug/framework/instance-slug/version"

    @classmethod
    def parse(cls, text: str) -> "ModelInstanceVersionHandle":
        parts = _parts(text, "model source", cls.FORM, (4, 5))
        if len(parts) == 4:
            raise NamingError(
                f"model source {text!r} has no version",
                context="kernels mount one model version; an unversioned source is refused",
                hint=f"write it as {text.strip('/')}/1 (or the version `kagflow model publish` printed)",
            )
        inst = ModelInstanceHandle.parse("/".join(parts[:4]))
        return inst.version(_version(text, parts[4], "model source", cls.FORM))

    @property
    def instance_handle(self) -> ModelInstanceHandle:
        return ModelInstanceHandle(self.owner, self.model, self.framework, self.instance)

    def __str__(self) -> str:
        return f"{self.owner}/{self.model}/{self.framework}/{self.instance}/{self.version}"

    def to_url(self) -> str:
        return f"{self.instance_handle.to_url()}/{self.version}"


def model_source(handle: "ModelInstanceVersionHandle | str") -> str:
    """The one string form of a kernel ``model_sources`` entry (lowercase framework, with version)."""
    if isinstance(handle, str):
        handle = ModelInstanceVersionHandle.parse(handle)
    return str(handle)
