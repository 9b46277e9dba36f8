"""Which Kaggle a project works against, chosen once per command: real Kaggle, or the local Kaggle on 127.0.0.1.

:func:`choose_target` applies the rule without starting anything: ``KAGFLOW_KAGGLE_ENDPOINT`` (an explicit
local server), then ``[project] target`` (``local``/``kaggle``), then ``auto``: Kaggle when credentials
exist, else the local server, started in the background on first use with its data under ``.kagflow/local``.
Everything that differs between the two lives in their class (as kagglehub registers one resolver per
environment): where the model versions are pinned, the base model's files, the image wheels are built for,
the flow's set-up, the state file's name. No caller asks which one it has.
"""

from __future__ import annotations

import os
from difflib import get_close_matches
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from kagflow.errors import ConfigError, KagflowError, MissingFileError, NotFoundError
from kagflow.hub.endpoint import ENDPOINT_ENV, Endpoint
from kagflow.project.config import WHEELS, Config
from kagflow.project.credentials import has_credentials
from kagflow.project.edit import set_value
from kagflow.project.state import ProjectState
from kagflow.rules import kaggle, metadata
from kagflow.workflow.competition_data import host_competition, hosted_data, local_files
from kagflow.workflow.standins import ensure_stand_in

LOCAL_KAGGLE_IMAGE = "local-kaggle"  # the image the local Kaggle's kernels run on (kagflow.local.run.image)
LOCAL_POLL_CAP = 3.0  # seconds: a loopback server is polled often (Kaggle's waits grow to WaitPolicy.CAP)
# The licence a rehearsal on the local Kaggle publishes under when [base_model]/[adapter_model] license is empty:
# nothing leaves the machine, and the stand-in's weights are kagflow's own. Real Kaggle takes no such default.
REHEARSAL_LICENSE = "Apache 2.0"


class Target:
    """One target of one project's ``config`` (kagflow.toml as loaded)."""

    name = ""  # its state file, .kagflow/state-<name>.json, and its endpoint's kind
    label = ""  # in words, before it is reached

    def __init__(self, config: Config):
        self.config = config

    def state(self) -> ProjectState:
        return ProjectState.load(self.config.layout.state_file(self.name))

    def connect(self) -> tuple[Endpoint, str]:
        """Its endpoint (starting what it needs) and, in words, why this target: what the command announces."""
        raise NotImplementedError

    def pinned(self, state: ProjectState) -> Config:
        """The config with the model versions this target has."""
        raise NotImplementedError

    def pin(self, which: str, version: int) -> None:
        """Record that ``which`` ("base_model"/"adapter_model"/"wheels") is at ``version`` here, where this target
        keeps it."""
        raise NotImplementedError

    @property
    def uses_stand_in(self) -> bool:
        """Whether the base model is the offline stand-in (rendered kernels then take its overrides)."""
        return False

    def base_model_dir(self) -> Path:
        """The base model's files to publish: [base_model] local_dir, else what this target offers instead."""
        config = self.config
        if not config.base_model.local_dir:
            return self.default_base_model()
        path = (config.root / config.base_model.local_dir).resolve()
        if not (path / "config.json").is_file():
            raise MissingFileError(
                f"[base_model] local_dir {path} holds no Hugging Face checkpoint (config.json)",
                context=f"file {config.path}, key local_dir",
                hint=f"download it: huggingface-cli download {config.base_model.hf_id} "
                     f"--local-dir {config.base_model.local_dir}")
        return path

    def default_base_model(self) -> Path:
        raise NotImplementedError

    def model_license(self, which: str) -> str:
        """The licence ``which`` ("base_model"/"adapter_model") is published under here: its table's license,
        one of Kaggle's (a ConfigError naming the key otherwise)."""
        model = self.config.model(which)
        try:
            return metadata.check_model_license(model.license or self.default_license(which))
        except KagflowError as e:
            raise ConfigError(f"{self.config.path.name}: [{which}] license = {model.license!r}: {e.message}",
                              context=f"file {self.config.path}, table [{which}], key license; publishing to "
                                      f"{self.label}", hint=e.hint) from None

    def default_license(self, which: str) -> str:
        """The licence used when ``which``'s table names none ("": none, refused)."""
        return ""

    def rules_fix(self, competition: str) -> str:
        """How the user accepts ``competition``'s rules here."""
        return f"accept them at {kaggle.rules_url(competition)}, signed in as {self.config.username}"

    @property
    def wheels_image(self) -> str:
        """The image a wheels dataset is built for, unless one is named."""
        return self.config.wheels.image

    def flow_wheels_image(self, session) -> tuple[str, str]:
        """The image the flow builds the wheels for, and in words how it was chosen (probed now, or why not)."""
        return self.wheels_image, f"[wheels] image = {self.wheels_image!r}"

    def setup(self, session) -> str:
        """The flow's first step here, for ``session`` (the command's); its one-line summary."""
        return f"target {session.endpoint.describe()} as {session.endpoint.username}"

    def kept_running(self, endpoint: Endpoint) -> str:
        """The URL of a server this target leaves running for the next command ("" for none)."""
        return ""

    def data_note(self) -> str:
        """What a report says of the competition's data here ("" for the competition's own files)."""
        return ""

    def data_files(self, session) -> Optional[dict]:
        """The competition's data files here: name -> a local copy (None: only listed, e.g. by Kaggle's
        ListDataFiles), or None when kagflow will make them in [data]'s schema; a KagflowError (with a did-you-mean
        where the target can list competitions) when the competition has none here."""
        from kagflow.hub.competitions import competition_file_names, competition_slugs

        slug = self.config.project.competition
        try:
            return dict.fromkeys(competition_file_names(session.gateway, slug))
        except NotFoundError as e:
            close = get_close_matches(slug, competition_slugs(session.gateway, slug.replace("-", " ")), n=1,
                                      cutoff=0.6)
            raise ConfigError(f"{self.config.path.name}: [project] competition = {slug!r}: {e.message}",
                              context=f"file {self.config.path}, table [project], key competition",
                              hint=f"did you mean competition = {close[0]!r}?" if close else
                              "copy the slug from the competition's URL (kaggle.com/competitions/SLUG)") from None


class KaggleTarget(Target):
    """Real Kaggle: model versions pinned in kagflow.toml, the base model from [base_model] local_dir."""

    name, label = "kaggle", "Kaggle"

    def connect(self) -> tuple[Endpoint, str]:
        if not has_credentials():
            raise ConfigError(
                "target = \"kaggle\" but no Kaggle credentials were found",
                context="looked in KAGGLE_API_TOKEN, ~/.kaggle/access_token, KAGGLE_USERNAME/KAGGLE_KEY, "
                        "~/.kaggle/kaggle.json (or $KAGGLE_CONFIG_DIR)",
                hint="create a token at https://www.kaggle.com/settings and save kaggle.json, "
                     "or set target = \"local\"")
        why = " (target = \"auto\" and Kaggle credentials were found)" if self.config.project.target == "auto" else ""
        return Endpoint(self.name, None, self.config.username), why

    def pinned(self, state: ProjectState) -> Config:
        return self.config

    def pin(self, which: str, version: int) -> None:
        table = self.config.wheels if which == WHEELS else self.config.model(which)
        if table.version != version:
            set_value(self.config.path, which, "version", version)

    def flow_wheels_image(self, session) -> tuple[str, str]:
        """A snapshot shipped with kagflow is probed first (Kaggle's image moves every few weeks): the probe kernel's
        image.json becomes [wheels] image; an image probed earlier is used as it is, and said so."""
        from kagflow.rules.image import BUILTIN_IMAGES
        from kagflow.workflow.image import PROBE_ACCELERATOR, PROBE_OUT

        image = self.config.wheels.image
        if image not in BUILTIN_IMAGES:
            return image, (f"[wheels] image = {image!r}, probed earlier (not probed again: `kagflow image probe` "
                           "if Kaggle's image changed since)")
        probed, path = session.probe_image(accelerator=PROBE_ACCELERATOR, out=PROBE_OUT)
        return PROBE_OUT, (f"Kaggle's image probed now ({probed.name}, Python {probed.python_version}), saved to "
                           f"{path} and set as [wheels] image (the shipped snapshot {image!r} was not used)")

    def default_base_model(self) -> Path:
        config = self.config
        raise MissingFileError("no base model files to publish to Kaggle",
                               context=f"file {config.path}, [base_model] local_dir is empty",
                               hint=f"download {config.base_model.hf_id} (huggingface-cli download "
                                    f"{config.base_model.hf_id} --local-dir models/hf-base) and set "
                                    'local_dir = "models/hf-base"')


class LocalTarget(Target):
    """The local Kaggle: model versions recorded in the state file, the offline stand-in as the base model (unless
    [base_model] local_dir), the synthetic competition hosted by the flow, kernels built for its own image.

    ``url``: a server already running (``KAGFLOW_KAGGLE_ENDPOINT``); None: the project's background server."""

    name, label = "local", "the local Kaggle"

    def __init__(self, config: Config, url: str | None = None):
        super().__init__(config)
        self.url = url.rstrip("/") if url else None

    def connect(self) -> tuple[Endpoint, str]:
        if self.url:
            host = urlparse(self.url).hostname
            if host not in ("127.0.0.1", "localhost", "::1"):
                raise ConfigError(f"{ENDPOINT_ENV}={self.url} is not a loopback address",
                                  hint="point it at the local Kaggle server, e.g. http://127.0.0.1:PORT, or unset it")
            return Endpoint(self.name, self.url, self.config.username, LOCAL_POLL_CAP), f" ({ENDPOINT_ENV} is set)"
        from kagflow.local.control import ensure_background_server  # the server's modules only when needed

        data = self.config.layout.local_server_data
        url = ensure_background_server(data)
        why = (f" (no Kaggle credentials; using the local Kaggle, data in {data})"
               if self.config.project.target == "auto" else "")
        return Endpoint(self.name, url, self.config.username, LOCAL_POLL_CAP), why

    def pinned(self, state: ProjectState) -> Config:
        return self.config.with_versions(state.model_versions())

    def pin(self, which: str, version: int) -> None:
        pass  # the state file's model (or wheels) record is the pin

    @property
    def uses_stand_in(self) -> bool:
        return not self.config.base_model.local_dir

    def default_license(self, which: str) -> str:
        return REHEARSAL_LICENSE

    def rules_fix(self, competition: str) -> str:
        return (f"kagflow local competition --accept-rules (the flow's setup step accepts them for "
                f"{self.config.username})")

    def default_base_model(self) -> Path:
        return ensure_stand_in(self.config)

    @property
    def wheels_image(self) -> str:
        return LOCAL_KAGGLE_IMAGE

    def flow_wheels_image(self, session) -> tuple[str, str]:
        return LOCAL_KAGGLE_IMAGE, "the local Kaggle's own image (its kernels run on it: nothing to probe)"

    def server_data_dir(self) -> Path:
        """The data folder of the server this target talks to: the one ``KAGFLOW_KAGGLE_ENDPOINT`` names (it says
        where through ``/health``, so a server started with ``--data-dir`` is followed), else ``.kagflow/local``."""
        if not self.url:
            return self.config.layout.local_server_data
        from kagflow.local.control import health

        info = health(self.url)
        if not info or not info.get("data_dir"):
            raise ConfigError(f"{ENDPOINT_ENV}={self.url}: no local Kaggle answers there",
                              hint="start it (kagflow local serve --data-dir DIR) or unset the variable")
        return Path(info["data_dir"])

    def setup(self, session) -> str:
        data = host_competition(self.config, self.server_data_dir(), accept_rules=True)
        hosted = f"local competition {data.slug} hosted" + (f" ({data.note})" if data.synthetic else "")
        if self.uses_stand_in:
            path = self.base_model_dir()
            return f"{hosted}; stand-in {self.config.base_model.stand_in} ready in {path}"
        return hosted

    def data_note(self) -> str:
        return hosted_data(self.config, self.server_data_dir()).note

    def data_files(self, session) -> Optional[dict]:
        return local_files(self.config, self.server_data_dir())

    def kept_running(self, endpoint: Endpoint) -> str:
        return endpoint.endpoint or ""


def local_target(config: Config) -> LocalTarget:
    """The project's local Kaggle: the server ``KAGFLOW_KAGGLE_ENDPOINT`` names, else its background server."""
    return LocalTarget(config, os.environ.get(ENDPOINT_ENV))


def choose_target(config: Config) -> Target:
    """The target of ``config``'s project, decided without starting or connecting anything."""
    mode = config.project.target
    if os.environ.get(ENDPOINT_ENV) or mode == "local" or (mode == "auto" and not has_credentials()):
        return local_target(config)
    return KaggleTarget(config)
