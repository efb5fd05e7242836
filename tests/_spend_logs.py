"""A LiteLLM proxy's SpendLogs table for tests: its DDL, transcribed from litellm's schema.prisma, and
the installed schema.prisma read back so a test can compare the two."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

# Transcribed from `model LiteLLM_SpendLogs` in litellm/proxy/schema.prisma (litellm 1.110.2) the way
# Prisma migrates it to Postgres: String -> TEXT, Float -> DOUBLE PRECISION, Int -> INTEGER,
# DateTime -> TIMESTAMP(3) (no time zone, UTC), Json -> JSONB; `?` -> nullable.
SPEND_LOGS_DDL = """
CREATE TABLE "LiteLLM_SpendLogs" (
    "request_id" TEXT NOT NULL,
    "call_type" TEXT NOT NULL,
    "api_key" TEXT NOT NULL DEFAULT '',
    "spend" DOUBLE PRECISION NOT NULL DEFAULT 0.0,
    "total_tokens" INTEGER NOT NULL DEFAULT 0,
    "prompt_tokens" INTEGER NOT NULL DEFAULT 0,
    "completion_tokens" INTEGER NOT NULL DEFAULT 0,
    "startTime" TIMESTAMP(3) NOT NULL,
    "endTime" TIMESTAMP(3) NOT NULL,
    "request_duration_ms" INTEGER,
    "completionStartTime" TIMESTAMP(3),
    "model" TEXT NOT NULL DEFAULT '',
    "model_id" TEXT DEFAULT '',
    "model_group" TEXT DEFAULT '',
    "custom_llm_provider" TEXT DEFAULT '',
    "api_base" TEXT DEFAULT '',
    "user" TEXT DEFAULT '',
    "metadata" JSONB DEFAULT '{}',
    "cache_hit" TEXT DEFAULT '',
    "cache_key" TEXT DEFAULT '',
    "request_tags" JSONB DEFAULT '[]',
    "team_id" TEXT,
    "organization_id" TEXT,
    "end_user" TEXT,
    "requester_ip_address" TEXT,
    "messages" JSONB DEFAULT '{}',
    "response" JSONB DEFAULT '{}',
    "session_id" TEXT,
    "status" TEXT,
    "mcp_namespaced_tool_name" TEXT,
    "billing_agent_id" TEXT,
    "agent_id" TEXT,
    "proxy_server_request" JSONB DEFAULT '{}',
    "litellm_call_id" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "LiteLLM_SpendLogs_pkey" PRIMARY KEY ("request_id")
);
CREATE INDEX "LiteLLM_SpendLogs_startTime_idx" ON "LiteLLM_SpendLogs"("startTime");
CREATE INDEX "LiteLLM_SpendLogs_startTime_request_id_idx" ON "LiteLLM_SpendLogs"("startTime", "request_id");
CREATE INDEX "LiteLLM_SpendLogs_end_user_idx" ON "LiteLLM_SpendLogs"("end_user");
CREATE INDEX "LiteLLM_SpendLogs_session_id_idx" ON "LiteLLM_SpendLogs"("session_id");
CREATE INDEX "LiteLLM_SpendLogs_litellm_call_id_idx" ON "LiteLLM_SpendLogs"("litellm_call_id");
CREATE INDEX "LiteLLM_SpendLogs_api_key_startTime_idx" ON "LiteLLM_SpendLogs"("api_key", "startTime");
"""


def prisma_model(name: str) -> dict[str, str]:
    """Field name -> Prisma type (with `?` when optional) of one model in the installed schema.prisma."""
    spec = importlib.util.find_spec("litellm")
    assert spec is not None and spec.origin is not None
    text = (Path(spec.origin).parent / "proxy" / "schema.prisma").read_text()
    block = re.search(rf"^model {name} \{{\n(.*?)^\}}", text, re.S | re.M)
    assert block is not None, f"model {name} not found in schema.prisma"
    fields = {}
    for line in block.group(1).splitlines():
        match = re.match(r"\s*(\w+)\s+(\w+\??)", line)
        if match and not line.strip().startswith("@@"):
            fields[match.group(1)] = match.group(2)
    return fields


def ddl_columns() -> list[str]:
    """The columns SPEND_LOGS_DDL declares, in order."""
    return re.findall(r'^\s+"(\w+)" ', SPEND_LOGS_DDL, re.M)
