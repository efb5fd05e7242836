"""Writes LiteLLM_SpendLogs rows the way a LiteLLM proxy builds them, for tests.

The proxy's own database writer needs Prisma's query engine, which cannot be fetched on this
machine (no network beyond package registries), so tests write the rows themselves: each row is
built by the proxy's own ``get_logging_payload`` (litellm/proxy/spend_tracking/spend_tracking_utils.py,
what ``DBSpendUpdateWriter.update_database`` calls) from the kwargs LiteLLM passes the callbacks, and
inserted the way Prisma stores it (JSON columns as JSON, timestamps in UTC without a zone).

A success row is what the proxy's ``_ProxyDBLogger`` writes on success. For a failed attempt the
proxy writes a row only when the whole request fails (``async_post_call_failure_hook``, which marks
the metadata ``status: failure`` and adds the ``error_information``); this writer writes one for
every failed attempt, the same way, so a test covers every row a proxy could write.

A proxy loads this module from the folder of its config.yaml (``callbacks: ["_spend_logs_writer.writer"]``)
and writes to ``RECSYS_TEST_SPEND_LOGS_DSN``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import psycopg
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy.spend_tracking.spend_tracking_utils import get_logging_payload
from psycopg.types.json import Jsonb

DSN_ENV = "RECSYS_TEST_SPEND_LOGS_DSN"
_JSON_COLUMNS = ("metadata", "request_tags", "messages", "response", "proxy_server_request")


def _utc_naive(value: object) -> object:
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).replace(tzinfo=None)
    if isinstance(value, str):
        return _utc_naive(datetime.fromisoformat(value))
    return value


class SpendLogsWriter(CustomLogger):  # type: ignore[misc]
    """A CustomLogger that inserts one LiteLLM_SpendLogs row per attempt into ``dsn``."""

    def __init__(self, dsn: str | None = None) -> None:
        super().__init__()
        self.dsn = dsn
        self.rows: list[dict[str, Any]] = []

    def _columns(self, conn: psycopg.Connection[Any]) -> list[str]:
        cursor = conn.execute("SELECT column_name FROM information_schema.columns "
                              "WHERE table_name = 'LiteLLM_SpendLogs'")
        return [row[0] for row in cursor.fetchall()]

    def write(self, kwargs: Mapping[str, Any], response_obj: Any, start_time: Any, end_time: Any,
              *, failed: bool) -> None:
        call = dict(kwargs)
        if failed:  # what the proxy's failure hook adds before it writes the row
            params = dict(call.get("litellm_params") or {})
            payload = call.get("standard_logging_object") or {}
            params["metadata"] = {**(params.get("metadata") or {}), "status": "failure",
                                  "error_information": payload.get("error_information")}
            call["litellm_params"] = params
        row = dict(get_logging_payload(kwargs=call, response_obj=response_obj, start_time=start_time,
                                       end_time=end_time))
        dsn = self.dsn or os.environ[DSN_ENV]
        with psycopg.connect(dsn) as conn:
            columns = [c for c in self._columns(conn) if c in row]
            values = []
            for column in columns:
                value = row[column]
                if column in _JSON_COLUMNS:
                    value = Jsonb(json.loads(value) if isinstance(value, str) else value)
                elif column in ("startTime", "endTime", "completionStartTime"):
                    value = _utc_naive(value)
                values.append(value)
            names = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join(["%s"] * len(columns))
            # The proxy skips a request_id it already wrote (it is the primary key).
            conn.execute(f'INSERT INTO "LiteLLM_SpendLogs" ({names}) VALUES ({marks}) '  # noqa: S608 - column names from the table itself
                         "ON CONFLICT (request_id) DO NOTHING", values)
        self.rows.append(row)

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.write(kwargs, response_obj, start_time, end_time, failed=False)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.write(kwargs, response_obj, start_time, end_time, failed=True)

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.write(kwargs, response_obj, start_time, end_time, failed=False)

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.write(kwargs, response_obj, start_time, end_time, failed=True)


writer = SpendLogsWriter()
