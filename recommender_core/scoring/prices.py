"""litellm's price table, read from the JSON file inside the installed litellm package.

litellm is never imported for this (importing it takes seconds and may fetch the remote price
map): the file is located with ``importlib.util.find_spec`` and parsed with ``json``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ScoringError
from ..identity import name_forms
from ..policy import Candidate

__all__ = ["PRICE_FILE_NAME", "ModelPrice", "PriceTable", "load_price_table", "price_file_path"]

PRICE_FILE_NAME = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True)
class ModelPrice:
    """USD per token, and where the figure came from (``litellm`` or ``policy``)."""

    input_per_token: float
    output_per_token: float
    origin: str

    def cost_per_call(self, input_tokens: int, output_tokens: int) -> float:
        return input_tokens * self.input_per_token + output_tokens * self.output_per_token


@dataclass(frozen=True)
class PriceTable:
    """Prices by LiteLLM model name (as written in the package file)."""

    prices: dict[str, ModelPrice]
    path: str

    def for_candidate(self, name: str, candidate: Candidate) -> ModelPrice | None:
        """The policy override first, then the exact name, then the name without a provider prefix."""
        if candidate.price is not None:
            return ModelPrice(candidate.price.input_per_1m / 1e6, candidate.price.output_per_1m / 1e6, "policy")
        for form in (name, *name_forms(name)):
            price = self.prices.get(form)
            if price is not None:
                return price
        return None


def price_file_path() -> Path:
    """The price JSON shipped inside the installed litellm package."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise ScoringError("litellm is not installed, so its price table is missing. Install recsys with its "
                           "dependencies (pip install recsys).")
    path = Path(next(iter(spec.submodule_search_locations))) / PRICE_FILE_NAME
    if not path.is_file():
        raise ScoringError(f"litellm's price table {path} is missing; reinstall litellm.")
    return path


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value >= 0 else None


# Parsed tables by file identity (path, size, modification time, inode): a long-lived process
# (``recsys serve``, a library caller) reads the 3 MB file once, and again when litellm is upgraded.
_CACHE: dict[str, tuple[tuple[int, int, int], PriceTable]] = {}
_CACHE_SIZE = 4


def _identity(path: str) -> tuple[int, int, int]:
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise ScoringError(f"litellm's price table {path} cannot be read: {exc}.") from exc
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def _load(path: str) -> PriceTable:
    identity = _identity(path)
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == identity:
        return cached[1]
    table = _parse(path)
    if path not in _CACHE and len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[path] = (identity, table)
    return table


def _parse(path: str) -> PriceTable:
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ScoringError(f"litellm's price table {path} cannot be read: {exc}.") from exc
    if not isinstance(data, dict):
        raise ScoringError(f"litellm's price table {path} is not a JSON object.")
    prices: dict[str, ModelPrice] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            continue
        inp = _number(entry.get("input_cost_per_token"))
        if inp is None:
            continue
        out = _number(entry.get("output_cost_per_token")) or 0.0
        prices[name] = ModelPrice(inp, out, "litellm")
    return PriceTable(prices=prices, path=path)


def load_price_table(path: Path | str | None = None) -> PriceTable:
    """Parse the price table (``path`` defaults to litellm's file), once per version of the file: the
    parsed table is kept by the file's identity (size, modification time, inode) and parsed again
    when the file changes."""
    return _load(str(path) if path is not None else str(price_file_path()))
