"""LMArena (Chatbot Arena) ratings: the ``lmsys`` source plugin (README, "Arena evidence").

The plugin class declares what the CLI, the policy and scoring ask for; reading the upstream
dataset or a mirror lives in ``load`` (network, mirror kinds and versions) and the parsers in
``parse``, imported only when a run loads data.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

from ...errors import SourceError
from ..base import (
    Batch,
    EvidenceValue,
    IngestOptions,
    IngestResult,
    ProgressFactory,
    Quality,
    Source,
    SourceOption,
    register_source,
)
from . import constants as C

if TYPE_CHECKING:
    import httpx

    from ...config import Settings
    from ...policy import Policy, Task
    from ..base import PreviousRun
    from ..http import HttpSettings
    from .load import LmsysReader

__all__ = ["NAME", "LmsysSource", "configs_from_policy"]

NAME = "lmsys"
CONFIG_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")


def configs_from_policy(policy: Policy) -> tuple[str, ...]:
    """The Arena configs the policy's tasks reference (``lmsys:<config>/...``), else the default."""
    found: list[str] = []
    for task in policy.tasks.values():
        for ref in task.evidence_refs:
            if ref.source == NAME:
                config = ref.selector.split("/", 1)[0]
                if config not in found:
                    found.append(config)
    return tuple(found) or C.DEFAULT_CONFIGS


def _pick(rows: Sequence[EvidenceValue]) -> EvidenceValue:
    # Several upstream names can map to one candidate (an alias and an exact name): the best-sampled wins.
    return sorted(rows, key=lambda r: (-(r.samples or 0), -r.value, r.model))[0]


@register_source
class LmsysSource(Source):
    """LMArena ratings from ``lmarena-ai/leaderboard-dataset`` (or a mirror of it).

    >>> from recommender_core.config import Settings
    >>> from recommender_core.policy import load_policy
    >>> source = LmsysSource(settings=Settings.load(), policy=load_policy())
    >>> source.configs
    ('text',)
    """

    name: ClassVar[str] = NAME
    job: ClassVar[str] = "ingest-lmsys"
    summary: ClassVar[str] = "Ingest LMArena (Chatbot Arena) ratings into the evidence store."
    mirror_help: ClassVar[str] = ("Read a mirror (URL or path) instead of the Hugging Face dataset; "
                                  "env RECSYS_LMSYS_URL.")
    options: ClassVar[tuple[SourceOption, ...]] = (
        SourceOption("configs", "--config", "Dataset config to ingest (repeatable; default: those the policy "
                     "references, else text).", kind="text-list"),
    )
    cronjob: ClassVar[bool] = True
    task_kinds: ClassVar[frozenset[str]] = frozenset({"chat"})
    reference_example: ClassVar[str] = "lmsys:text/coding"

    def __init__(self, *, settings: Settings, policy: Policy, progress: ProgressFactory | None = None,
                 configs: Sequence[str] | None = None, endpoint: str = C.HF_ENDPOINT,
                 transport: httpx.BaseTransport | None = None, client: httpx.Client | None = None,
                 http_settings: HttpSettings | None = None, sleep: Callable[[float], None] | None = None) -> None:
        super().__init__(settings=settings, policy=policy, progress=progress, transport=transport, client=client,
                         http_settings=http_settings, sleep=sleep)
        chosen = tuple(dict.fromkeys(configs)) if configs else configs_from_policy(policy)  # --config text twice
        for config in chosen:
            if not CONFIG_NAME.match(config):
                raise SourceError(f"{NAME}: {config!r} is not a dataset config name (e.g. text, vision, webdev).",
                                  source=NAME)
        self.configs = chosen
        self.endpoint = endpoint
        self._reader: LmsysReader | None = None

    # --- declarations ---

    @classmethod
    def check_selector(cls, text: str, selector: str) -> None:
        if "/" not in selector:
            raise ValueError(f"Arena evidence {text!r} must be 'lmsys:<config>/<category>', e.g. lmsys:text/coding")

    @classmethod
    def quality(cls, ref: str, selector: str, rows: Sequence[EvidenceValue], names: Sequence[str],
                task: Task) -> Quality:
        """Expected win rate against the category's median-rated model (``scoring.normalise``)."""
        from ...scoring.normalise import elo_win_rate

        in_category = [r for r in rows if r.source == NAME and r.category == selector]
        if not in_category:
            reason = f"no current evidence for {ref} (run 'recsys ingest lmsys')"
            return Quality({}, dict.fromkeys(names, reason))
        ordered = sorted(in_category, key=lambda r: (r.value, r.model))
        reference = ordered[(len(ordered) - 1) // 2]
        by_candidate: dict[str, list[EvidenceValue]] = defaultdict(list)
        for r in in_category:
            if r.candidate is not None:
                by_candidate[r.candidate].append(r)
        qualities: dict[str, float] = {}
        missing: dict[str, str] = {}
        for name in names:
            if name not in by_candidate:
                missing[name] = f"no {ref} rating for this model"
                continue
            row = _pick(by_candidate[name])
            rating = row.lower if task.conservative and row.lower is not None else row.value
            qualities[name] = elo_win_rate(rating, reference.value)
        return Quality(qualities, missing, {"reference_model": reference.model, "reference_rating": reference.value})

    @classmethod
    def notes(cls, result: IngestResult) -> list[str]:
        return ["LMArena data: CC BY 4.0, lmarena-ai/leaderboard-dataset (https://lmarena.ai)."]

    # --- loading (``load``) ---

    def reader(self) -> LmsysReader:
        if self._reader is None:
            from .load import LmsysReader

            self._reader = LmsysReader(self)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        super().close()

    def scope(self, options: IngestOptions) -> str | None:
        """The configs a run ingests: asking for another config re-reads an unchanged dataset sha."""
        return "configs:" + ",".join(sorted(self.configs))

    def resolve_version(self, options: IngestOptions) -> str:
        return self.reader().resolve_version(options)

    def load(self, version: str, options: IngestOptions, previous: PreviousRun | None = None) -> Batch:
        return self.reader().load(version, options)
