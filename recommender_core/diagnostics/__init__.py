"""Diagnostics: the snapshot document, the HTTP debug server and Pushgateway metrics."""

from __future__ import annotations

__all__: list[str] = []
