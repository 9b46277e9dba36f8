"""Where the official client's requests go, and as whom: Kaggle, or a local Kaggle server's URL.

An :class:`Endpoint` is a plain value: which target chose it, and how, is ``kagflow.workflow.target``'s
business. Its ``kind`` picks the column of hints a refusal gets (``kagflow.hub.errors.REFUSALS``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kagflow.rules.kaggle import KAGGLE_URL

KINDS = ("kaggle", "local")
ENDPOINT_ENV = "KAGFLOW_KAGGLE_ENDPOINT"  # a local Kaggle server to talk to, whatever [project] target says


@dataclass(frozen=True)
class Endpoint:
    kind: str  # one of KINDS
    endpoint: Optional[str]  # the server's URL; None: the official client's production endpoint
    username: str
    poll_cap: Optional[float] = None  # the longest wait between two polls of a long wait (None: WaitPolicy.CAP)

    @property
    def url(self) -> str:
        """Where the target is reached: the local server's URL or Kaggle's."""
        return self.endpoint or KAGGLE_URL

    def describe(self) -> str:
        return "Kaggle" if self.endpoint is None else f"the local Kaggle at {self.endpoint}"

    def link(self, handle) -> str:
        """The page of ``handle`` here (the local server's, not kaggle.com's, when local)."""
        url = handle.to_url()
        return url if self.endpoint is None else url.replace(KAGGLE_URL, self.endpoint)
