"""Generate the LMArena cassettes and the sample mirror, reproducibly: ``python cassettes/make_lmsys.py``.

The interactions follow the real Hugging Face Hub exchanges (SOURCES.md A.1 and C): the dataset API
document, a `resolve/<sha>/...` answer of 302 to a signed Xet CDN URL, then the parquet bytes. The
values (sha, dates, ratings, sizes) are the project's own. A test regenerates everything into a
temporary folder and compares it with what is committed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from recommender_core.sources.lmsys import constants as C  # noqa: E402
from tests.lmsys_data import board_rows, parquet_bytes  # noqa: E402

SHA = hashlib.sha1(b"recsys lmsys cassette", usedforsecurity=False).hexdigest()
DATE = "Fri, 20 Nov 2026 06:00:00 GMT"
CDN_HOST = "https://cas-bridge.xethub.hf.co"
UA = "recsys"


def _request(url: str) -> dict[str, Any]:
    return {"body": None, "headers": {"Accept": ["*/*"]}, "method": "GET", "uri": url}


def _response(code: int, message: str, headers: dict[str, str], body: bytes | str) -> dict[str, Any]:
    return {"status": {"code": code, "message": message},
            "headers": {k: [v] for k, v in headers.items()}, "body": {"string": body}}


def api_document(sha: str = SHA) -> dict[str, Any]:
    """The shape of ``GET /api/datasets/<id>`` (fields the Hub returns, trimmed of nothing we rely on)."""
    configs = ["text", "text_style_control", "vision", "webdev"]
    return {
        "_id": "6650c0ffee0000000000abcd", "id": C.DATASET_ID, "author": "lmarena-ai", "sha": sha,
        "lastModified": "2026-11-20T05:58:12.000Z", "private": False, "gated": False, "disabled": False,
        "downloads": 4211, "likes": 187,
        "tags": ["license:cc-by-4.0", "size_categories:1M<n<10M", "format:parquet", "library:datasets",
                 "region:us"],
        "cardData": {"license": "cc-by-4.0",
                     "configs": [{"config_name": c, "data_files": [
                         {"split": "latest", "path": f"{c}/latest-*"}, {"split": "full", "path": f"{c}/full-*"}]}
                         for c in configs]},
        "siblings": [{"rfilename": ".gitattributes"}, {"rfilename": "README.md"}]
        + [{"rfilename": f"{c}/{s}-00000-of-00001.parquet"} for c in configs for s in ("full", "latest")],
        "createdAt": "2025-06-02T17:21:40.000Z", "usedStorage": 98765432,
    }


def api_interaction(sha: str = SHA) -> dict[str, Any]:
    body = json.dumps(api_document(sha), separators=(",", ":"))
    return {"request": _request(C.api_url()), "response": _response(200, "OK", {
        "Content-Type": "application/json; charset=utf-8", "Content-Length": str(len(body.encode())),
        "Date": DATE, "ETag": 'W/"' + hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()[:20] + '"',
        "X-Request-Id": "Root=1-673d7a40-0a1b2c3d4e5f60718293a4b5", "Vary": "Origin",
        "Access-Control-Allow-Origin": "https://huggingface.co"}, body)}


def download_interactions(data: bytes, *, sha: str = SHA, config: str = "text",
                          declared_length: int | None = None) -> list[dict[str, Any]]:
    """The 302 from ``resolve`` to the signed CDN URL, and the CDN answer (Content-Length may lie)."""
    url = C.parquet_url(sha, config)
    digest = hashlib.sha256(data).hexdigest()
    cdn = (f"{CDN_HOST}/xet-bridge-us/6650c0ffee0000000000abcd/{digest}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
           "&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD&X-Amz-Credential=cas%2F20261120%2Fus-east-1%2Fs3%2Faws4_request"
           "&X-Amz-Date=20261120T060000Z&X-Amz-Expires=3600&X-Amz-Signature=0000000000000000000000000000000000"
           "000000000000000000000000000000&X-Amz-SignedHeaders=host&x-id=GetObject"
           f"&Expires=1795157200&Policy=redacted&Signature=redacted&Key-Pair-Id=K2L8F4GPSG1IFC")
    found = f"Found. Redirecting to {cdn}"
    return [
        {"request": _request(url), "response": _response(302, "Found", {
            "Content-Type": "text/plain; charset=utf-8", "Content-Length": str(len(found)), "Date": DATE,
            "Location": cdn, "X-Repo-Commit": sha, "ETag": f'"{digest[:40]}"', "X-Linked-Etag": f'"{digest}"',
            "X-Linked-Size": str(len(data)), "X-Xet-Hash": digest, "Vary": "Origin, Accept"}, found)},
        {"request": _request(cdn), "response": _response(200, "OK", {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(declared_length if declared_length is not None else len(data)),
            "Date": DATE, "ETag": f'"{digest}"', "Accept-Ranges": "bytes",
            "Content-Disposition": f"inline; filename*=UTF-8''{C.PARQUET_FILE}; filename=\"{C.PARQUET_FILE}\";",
            "Cache-Control": "public, max-age=604800, immutable, s-maxage=604800"}, data)},
    ]


def cassettes() -> dict[str, dict[str, Any]]:
    board = parquet_bytes(board_rows())
    rate_limited = {"request": _request(C.api_url()), "response": _response(429, "Too Many Requests", {
        "Content-Type": "application/json; charset=utf-8", "Date": DATE, "Retry-After": "2",
        "RateLimit": '"api";r=0;t=2', "RateLimit-Policy": '"fixed window";"api";q=500;w=300'},
        '{"error":"You have been rate-limited; you can retry this action in about 2 seconds."}')}
    server_error = {"request": _request(C.parquet_url(SHA, "text")), "response": _response(
        500, "Internal Server Error", {"Content-Type": "application/json; charset=utf-8", "Date": DATE},
        '{"error":"Internal Error - We\'re working hard to fix this as soon as possible!"}')}
    drifted = parquet_bytes(board_rows(), drop=("vote_count",), rename={"rating_upper": "rating_q975"})
    return {
        "lmsys_api.yaml": [api_interaction()],
        "lmsys_download.yaml": [api_interaction(), *download_interactions(board)],
        "lmsys_429_then_success.yaml": [rate_limited, api_interaction(), *download_interactions(board)],
        "lmsys_500.yaml": [api_interaction(), server_error, server_error, server_error],
        "lmsys_truncated.yaml": [api_interaction(), *download_interactions(board[: len(board) // 2],
                                                                           declared_length=len(board))],
        "lmsys_schema_change.yaml": [api_interaction(), *download_interactions(drifted)],
    }  # type: ignore[dict-item]


def sample_mirror() -> dict[str, bytes]:
    """``sample_mirror/lmsys``: laid out like the dataset repo, version pinned to ``sample``."""
    return {
        "VERSION": b"sample\n",
        f"text/{C.PARQUET_FILE}": parquet_bytes(board_rows()),
        "README.md": (b"# Sample LMArena mirror (recsys demo)\n\nLaid out like the Hugging Face dataset "
                      b"`lmarena-ai/leaderboard-dataset` (one folder per config, `latest` split).\nThe ratings "
                      b"are invented for the demo and are NOT real rankings; the source version is `sample`.\n"
                      b"Regenerate with `python cassettes/make_lmsys.py`.\n"),
    }


def write(cassette_dir: Path, mirror_dir: Path) -> list[Path]:
    written = []
    for name, interactions in cassettes().items():
        path = cassette_dir / name
        path.write_text(yaml.dump({"interactions": interactions, "version": 1}, Dumper=yaml.SafeDumper,
                                  sort_keys=True, width=1000), "utf-8")
        written.append(path)
    for name, data in sample_mirror().items():
        path = mirror_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write(ROOT / "cassettes", ROOT / "sample_mirror" / "lmsys"):
        print(p.relative_to(ROOT))
