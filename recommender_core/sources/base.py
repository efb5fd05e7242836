"""The Source plugin base and registry, with the ingest run as a template method.

A source is one plugin class. It declares its ``name``, the CLI ``options`` it takes (rendered by
the CLI, passed back as keyword-only constructor arguments), the task kinds its evidence measures
and the policy references it accepts (``check_selector``), and how its evidence becomes a quality
in [0, 1] (``quality``). It implements how to find its current version cheaply
(``resolve_version``) and how to read its rows (``load``: parse, then validate, then yield rows),
given the previous successful run (``PreviousRun``).

``Source.run`` does the rest the same way for every source: take the job lock, record the run, skip
an unchanged version, enforce the rejection threshold, and write the evidence, the source's state
and the run's outcome in one transaction, so a failure at any point leaves the previous evidence
current and the failed run recorded.

This module is light on purpose (no SQLAlchemy, no httpx at import): the CLI reads the plugins'
declarations to build its commands, and the policy asks them to check references.
"""

from __future__ import annotations

import abc
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ..errors import SourceSchemaError

if TYPE_CHECKING:
    import httpx
    from sqlmodel import Session

    from ..config import Settings
    from ..policy import Policy, Task
    from ..store import Store
    from .http import HttpSettings, SourceClient

__all__ = [
    "MAX_REJECTED_FRACTION",
    "SOURCES",
    "Batch",
    "EvidenceRecord",
    "EvidenceValue",
    "IngestOptions",
    "IngestResult",
    "PreviousRun",
    "ProgressFactory",
    "Quality",
    "Source",
    "SourceOption",
    "git_head",
    "register_source",
]

# More rejected rows than this fraction fails the whole run, with nothing written.
MAX_REJECTED_FRACTION = 0.05


@dataclass(frozen=True)
class IngestOptions:
    """What the user asked for (CLI flags and settings)."""

    mirror: str | None = None  # a mirror URL or path; None: the source's setting, else upstream
    force: bool = False
    dry_run: bool = False
    keep_runs: int = 30


@dataclass(frozen=True)
class SourceOption:
    """A source-specific option: the CLI renders it as ``flag`` and passes the value to the
    constructor as the keyword argument ``name``."""

    name: str
    flag: str
    help: str
    kind: Literal["flag", "text-list"] = "flag"


@dataclass(frozen=True)
class EvidenceRecord:
    """One validated evidence value, before it is stored."""

    model: str
    category: str
    value: float
    metric: str = "rating"
    task_type: str | None = None
    lower: float | None = None
    upper: float | None = None
    samples: int | None = None
    rank: int | None = None
    revision: str | None = None
    split: str | None = None
    subset_count: int | None = None
    published_on: date | None = None
    organization: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """Everything one load produced: accepted records, rejections counted per reason, and notes."""

    records: list[EvidenceRecord] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    # Rows that are neither evidence nor errors (e.g. a legacy "-" rating means unrated).
    skipped: Counter[str] = field(default_factory=Counter)
    details: dict[str, Any] = field(default_factory=dict)
    # Incremental cursors (``SourceState`` key -> value), written in the run's own transaction.
    state: dict[str, str] = field(default_factory=dict)

    def reject(self, reason: str, count: int = 1) -> None:
        self.rejected[reason] += count

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())


@dataclass(frozen=True)
class IngestResult:
    """The outcome of one ingest, for the CLI to render and the metrics to push."""

    source: str
    status: str  # success | unchanged | dry-run
    source_version: str
    run_id: int | None
    rows_accepted: int
    rows_rejected: int
    rejected_reasons: Mapping[str, int]
    skipped: Mapping[str, int]
    details: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PreviousRun:
    """The current (last successful) run of a source, handed to ``load``: its version, its stored
    state (incremental cursors) and, on demand, its evidence."""

    run_id: int
    source_version: str | None
    state: Mapping[str, str]
    read_evidence: Callable[[], Sequence[EvidenceRecord]] = field(repr=False, compare=False)

    def evidence(self) -> Sequence[EvidenceRecord]:
        return self.read_evidence()


@dataclass(frozen=True)
class EvidenceValue:
    """One current evidence row, reduced to what scoring reads."""

    source: str
    model: str
    candidate: str | None
    category: str
    task_type: str | None
    value: float
    lower: float | None
    samples: int | None


@dataclass(frozen=True)
class Quality:
    """What a source makes of one evidence reference for a task: a quality in [0, 1] per candidate,
    why the others have none, and details about the reference (the reference model, coverage)."""

    by_candidate: Mapping[str, float]
    missing: Mapping[str, str]
    details: Mapping[str, Any] = field(default_factory=dict)


# A progress reporter: called with (done, total or None); the CLI passes a rich progress bar.
ProgressFactory = Callable[[str], Callable[[int, int | None], None]]


class Source(abc.ABC):
    """An evidence source plugin: declarations (class attributes and classmethods) plus two methods.

    The constructor is the one seam for every source: ``transport=`` (an ``httpx`` transport, e.g.
    ``httpx.MockTransport`` in tests) or ``client=`` (a ready ``httpx.Client``), keyword-only.
    """

    name: ClassVar[str]
    job: ClassVar[str]
    # One line for ``recsys ingest <name> --help``, and the help of its mirror option.
    summary: ClassVar[str] = ""
    mirror_help: ClassVar[str] = "Read a mirror (URL or path) instead of the upstream source."
    options: ClassVar[tuple[SourceOption, ...]] = ()
    # The task kinds (policy ``kind``) whose quality this source's evidence measures.
    task_kinds: ClassVar[frozenset[str]] = frozenset()
    # A policy reference shown in messages, e.g. ``lmsys:text/coding``.
    reference_example: ClassVar[str] = ""
    # Deployed as a CronJob (its ``job`` is one of the deployment's commands): the CLI pushes its
    # metrics. A source users run by hand (a file of their own) leaves this False.
    cronjob: ClassVar[bool] = False

    def __init__(self, *, settings: Settings, policy: Policy, progress: ProgressFactory | None = None,
                 transport: httpx.BaseTransport | None = None, client: httpx.Client | None = None,
                 http_settings: HttpSettings | None = None, sleep: Callable[[float], None] | None = None) -> None:
        self.settings = settings
        self.policy = policy
        self.progress = progress
        self._transport, self._client, self._http_settings, self._sleep = transport, client, http_settings, sleep
        self._http: SourceClient | None = None

    # --- declarations the policy, the CLI and scoring ask for ------------------------------------

    @classmethod
    def check_selector(cls, text: str, selector: str) -> None:
        """Raise ``ValueError`` (one line: what is wrong, what to write) unless ``selector`` (the part of
        the policy reference ``text`` after ``<name>:``) is a reference this source accepts."""
        return

    @classmethod
    @abc.abstractmethod
    def quality(cls, ref: str, selector: str, rows: Sequence[EvidenceValue], names: Sequence[str],
                task: Task) -> Quality:
        """Qualities in [0, 1] for ``names`` (candidates) from this source's current evidence ``rows``."""

    @classmethod
    def notes(cls, result: IngestResult) -> list[str]:
        """Extra lines for people about a finished ingest (an attribution, unmapped names)."""
        return []

    @classmethod
    def result_document(cls, result: IngestResult) -> dict[str, Any]:
        """The ingest result as a JSON document."""
        return result.to_json()

    # --- the plugin's work ------------------------------------------------------------------------

    def mirror(self, options: IngestOptions) -> str | None:
        """The mirror to read: the option, else the source's setting (``RECSYS_<NAME>_URL``), else None."""
        chosen = options.mirror or self.settings.source_url(self.name)
        return chosen.strip() if chosen and chosen.strip() else None

    def http(self, token: str | None = None) -> SourceClient:
        """The source's HTTP client, built once from the constructor's seam (``transport``/``client``)."""
        if self._http is None:
            from .http import SourceClient

            kwargs: dict[str, Any] = {}
            if self._sleep is not None:
                kwargs["sleep"] = self._sleep
            self._http = SourceClient(source=self.name, token=token, client=self._client, transport=self._transport,
                                      settings=self._http_settings, **kwargs)
        return self._http

    @abc.abstractmethod
    def resolve_version(self, options: IngestOptions) -> str:
        """The version of the data the source would deliver now (a dataset sha, a commit, a fingerprint)."""

    @abc.abstractmethod
    def load(self, version: str, options: IngestOptions, previous: PreviousRun | None = None) -> Batch:
        """Read, parse and validate every row of ``version``; ``previous`` is the current run, if any."""

    def scope(self, options: IngestOptions) -> str | None:
        """What part of the source a run covers (configs, tracked models), or None when it is always all.

        A run is ``unchanged`` only when both the version and the scope equal the current run's, so
        asking for more (a new config, a new candidate) is ingested at once, not at the next upstream
        change. Computed without I/O: it is compared before anything is fetched.
        """
        return None

    def save_state(self, session: Session, *, now: datetime) -> None:  # noqa: B027 - an optional hook
        """Called inside the run's write transaction after the evidence and the batch's state are written."""

    def close(self) -> None:
        """Release the network client and anything else the source holds."""
        if self._http is not None:
            self._http.close()
            self._http = None

    # --- the template ---------------------------------------------------------------------------

    def check_rejections(self, batch: Batch) -> None:
        total = len(batch.records) + batch.rows_rejected
        if total == 0:
            raise SourceSchemaError(f"{self.name}: the source holds no rows; nothing was written. Check that "
                                    f"the mirror (or RECSYS_{self.name.upper()}_URL) points at {self.name} data.",
                                    source=self.name, option="mirror")
        if batch.rows_rejected / total > MAX_REJECTED_FRACTION:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in batch.rejected.most_common(5))
            raise SourceSchemaError(
                f"{self.name}: {batch.rows_rejected} of {total} rows were rejected ({reasons}), more than "
                f"{MAX_REJECTED_FRACTION:.0%}; nothing was written and the previous evidence stays current.",
                source=self.name)

    def run(self, store: Store, options: IngestOptions) -> IngestResult:
        """Ingest once: lock, record, skip if unchanged, validate, write atomically, record the outcome."""
        from .ingest import run_ingest

        return run_ingest(self, store, options)


def git_head(folder: Path) -> str | None:
    """The HEAD commit of a git clone at ``folder`` (a mirror's version), read from the files under
    ``.git`` without running git; None when ``folder`` is not a readable clone. Handles a worktree or
    submodule (``.git`` is a file naming the git dir), loose and packed refs, and a detached HEAD."""
    try:
        return _read_git_head(folder)
    except (OSError, UnicodeDecodeError):
        return None


def _is_sha(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)  # sha-1 or sha-256 repos


def _read_git_head(folder: Path) -> str | None:
    git = folder / ".git"
    if git.is_file():  # a worktree or submodule: "gitdir: <path>"
        text = git.read_text(encoding="utf-8").strip()
        if text.startswith("gitdir:"):
            git = (folder / text.split(":", 1)[1].strip()).resolve()
    if not git.is_dir():
        return None
    head = (git / "HEAD").read_text(encoding="utf-8").strip()
    if not head.startswith("ref:"):
        return head if _is_sha(head) else None
    ref = head.split(":", 1)[1].strip()
    commondir = git / "commondir"
    common = (git / commondir.read_text(encoding="utf-8").strip()).resolve() if commondir.is_file() else git
    for base in (git, common):
        loose = base / ref
        if loose.is_file():
            return loose.read_text(encoding="utf-8").strip() or None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            sha, _, name = line.partition(" ")
            if name.strip() == ref:
                return sha
    return None


SOURCES: dict[str, type[Source]] = {}


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator: add a Source to the registry that every user-facing list comes from."""
    if cls.name in SOURCES and SOURCES[cls.name] is not cls:
        raise RuntimeError(f"two sources are registered as {cls.name!r}")
    SOURCES[cls.name] = cls
    return cls
