"""``recsys ingest``: one subcommand per source (each in its own module)."""

from ._base import RecsysTyper

app = RecsysTyper()

# Registration happens on import; each module adds its command to ``app``.
from . import ingest_litellm, ingest_lmsys, ingest_mteb, ingest_outcomes  # noqa: E402,F401
