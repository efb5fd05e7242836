"""Write the vcrpy cassettes of the MTEB source (cassettes/mteb_*.yaml) from the shipped sample mirror.

The bodies follow GitHub's and the Hugging Face Hub's real formats (endpoints, headers, field names,
status codes) but hold the project's own values: the result files are those of sample_mirror/mteb.

    .venv/bin/python scripts/gen_mteb_cassettes.py
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
MIRROR = ROOT / "sample_mirror" / "mteb" / "results"
OUT = ROOT / "cassettes"
API = "https://api.github.com/repos/embeddings-benchmark/results"
RAW = "https://raw.githubusercontent.com/embeddings-benchmark/results"
HF_API = "https://huggingface.co/api/datasets/mteb/results"
HF_RESOLVE = "https://huggingface.co/datasets/mteb/results/resolve"

COMMIT_1 = "5e1f0c3a9b7d2e4f6a8c0b1d3e5f7a9c2b4d6e80"
COMMIT_2 = "7a2c4e6f8b0d1a3c5e7f9b2d4a6c8e0f1b3d5a79"
DATASET_SHA = "c0ffee00d15ea5e5b0a710ad0f1ce0bead5eed42"
# A folder that matches no candidate (never fetched) and an odd variant folder (never tracked).
EXTRA_FOLDERS = ("sentence-transformers__all-MiniLM-L6-v2", "openai__text-embedding-3-small_(embed_dim=512)")


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _api_headers(body: bytes, remaining: int) -> dict[str, list[str]]:
    return {
        "Content-Type": ["application/json; charset=utf-8"],
        "Cache-Control": ["public, max-age=60, s-maxage=60"],
        "ETag": [f'W/"{hashlib.sha256(body).hexdigest()}"'],
        "X-GitHub-Media-Type": ["github.v3; format=json"],
        "x-github-api-version-selected": ["2022-11-28"],
        "X-RateLimit-Limit": ["60"],
        "X-RateLimit-Remaining": [str(remaining)],
        "X-RateLimit-Reset": ["1795651200"],
        "X-RateLimit-Resource": ["core"],
        "X-RateLimit-Used": [str(60 - remaining)],
        "Access-Control-Allow-Origin": ["*"],
        "Content-Length": [str(len(body))],
        "X-GitHub-Request-Id": ["C0DE:1A2B:3C4D5E:6F7A8B:65F00000"],
    }


def _raw_headers(body: bytes) -> dict[str, list[str]]:
    return {
        "Content-Type": ["text/plain; charset=utf-8"],
        "Cache-Control": ["max-age=300"],
        "ETag": [f'"{hashlib.sha256(body).hexdigest()}"'],
        "Accept-Ranges": ["bytes"],
        "Access-Control-Allow-Origin": ["*"],
        "Content-Length": [str(len(body))],
        "X-Content-Type-Options": ["nosniff"],
        "X-Frame-Options": ["deny"],
        "X-GitHub-Request-Id": ["BEEF:2B3C:4D5E6F:7A8B9C:65F00001"],
        "Via": ["1.1 varnish"],
    }


def _interaction(url: str, status: int, body: bytes, headers: dict[str, list[str]]) -> dict[str, Any]:
    message = {200: "OK", 403: "Forbidden", 302: "Found"}[status]
    try:
        payload: Any = {"string": body.decode("utf-8")}
    except UnicodeDecodeError:
        payload = {"string": body}
    return {"request": {"body": None, "headers": {"Accept": ["*/*"]}, "method": "GET", "uri": url},
            "response": {"status": {"code": status, "message": message}, "headers": headers, "body": payload}}


def _api(url: str, document: Any, remaining: int) -> dict[str, Any]:
    body = json.dumps(document, indent=2).encode()
    return _interaction(url, 200, body, _api_headers(body, remaining))


def _commit(sha: str, tree: str) -> dict[str, Any]:
    return {"sha": sha, "node_id": "C_kwDOJ" + sha[:12], "url": f"{API}/commits/{sha}",
            "html_url": f"https://github.com/embeddings-benchmark/results/commit/{sha}",
            "commit": {"author": {"name": "recsys sample", "email": "sample@example.invalid",
                                  "date": "2026-11-20T08:00:00Z"},
                       "committer": {"name": "GitHub", "email": "noreply@github.com", "date": "2026-11-20T08:00:00Z"},
                       "message": "Add results (recsys sample)",
                       "tree": {"sha": tree, "url": f"{API}/git/trees/{tree}"},
                       "comment_count": 0},
            "parents": [], "stats": {"total": 2, "additions": 2, "deletions": 0}, "files": []}


def _tree(sha: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"sha": sha, "url": f"{API}/git/trees/{sha}", "tree": entries, "truncated": False}


def _entry(path: str, kind: str, sha: str, size: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path, "mode": "040000" if kind == "tree" else "100644", "type": kind, "sha": sha}
    if size is not None:
        entry["size"] = size
    entry["url"] = f"{API}/git/{'trees' if kind == 'tree' else 'blobs'}/{sha}"
    return entry


def _model_files(folder: str, changed: bool) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for path in sorted((MIRROR / folder).rglob("*")):
        if path.is_file():
            body = path.read_bytes()
            if changed and path.name == "STSBenchmark.json":
                doc = json.loads(body)
                for subset in doc["scores"]["test"]:
                    subset["main_score"] = subset["cosine_spearman"] = 0.9001
                body = json.dumps(doc, indent=2).encode()
            files[path.relative_to(MIRROR / folder).as_posix()] = body
    return files


def _walk(commit: str, changed_folder: str | None, fetch: set[str] | None, remaining: int) -> list[dict[str, Any]]:
    folders = sorted([p.name for p in MIRROR.iterdir() if p.is_dir()] + list(EXTRA_FOLDERS))
    model_trees: dict[str, tuple[str, dict[str, bytes]]] = {}
    for folder in folders:
        files = _model_files(folder, folder == changed_folder) if (MIRROR / folder).is_dir() else {}
        digest = _sha(folder + "".join(f"{p}:{hashlib.sha1(b, usedforsecurity=False).hexdigest()}"
                                       for p, b in files.items()))
        model_trees[folder] = (digest, files)
    results_sha = _sha("results" + "".join(sha for sha, _ in model_trees.values()))
    root_sha = _sha("root" + results_sha)
    out = [
        _api(f"{API}/commits/main", _commit(commit, root_sha), remaining),
        _api(f"{API}/git/trees/{commit}", _tree(root_sha, [
            _entry(".github", "tree", _sha(".github")), _entry("README.md", "blob", _sha("readme"), 1795),
            _entry("results", "tree", results_sha), _entry("scripts", "tree", _sha("scripts"))]), remaining - 1),
        _api(f"{API}/git/trees/{results_sha}",
             _tree(results_sha, [_entry(f, "tree", sha) for f, (sha, _) in model_trees.items()]), remaining - 2),
    ]
    left = remaining - 3
    for folder, (tree_sha, files) in model_trees.items():
        if not files or (fetch is not None and folder not in fetch):
            continue
        entries: list[dict[str, Any]] = []
        for rev in sorted({p.split("/")[0] for p in files}):
            entries.append(_entry(rev, "tree", _sha(folder + rev)))
        for path, body in files.items():
            entries.append(_entry(path, "blob", hashlib.sha1(body, usedforsecurity=False).hexdigest(), len(body)))
        out.append(_api(f"{API}/git/trees/{tree_sha}?recursive=1", _tree(tree_sha, entries), left))
        left -= 1
        for path, body in files.items():
            url = f"{RAW}/{commit}/results/{quote(folder)}/{quote(path)}"
            out.append(_interaction(url, 200, body, _raw_headers(body)))
    return out


def _rate_limited() -> list[dict[str, Any]]:
    body = json.dumps({
        "message": "API rate limit exceeded for 203.0.113.7. (But here's the good news: Authenticated requests get "
                   "a higher rate limit. Check out the documentation for more details.)",
        "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting",
    }).encode()
    headers = _api_headers(body, 0)
    headers["X-RateLimit-Used"] = ["60"]
    return [_interaction(f"{API}/commits/main", 403, body, headers)]


def _parquet() -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: dict[str, list[Any]] = {"model_name": [], "model_revision": [], "task_name": [], "split": [],
                                  "subset": [], "language": [], "score": [], "is_public": []}

    def add(model: str, rev: str, task: str, split: str, subset: str, score: float) -> None:
        for key, value in zip(rows, (model, rev, task, split, subset, ["eng-Latn"], score, True), strict=True):
            rows[key].append(value)

    for folder in sorted(p.name for p in MIRROR.iterdir() if p.is_dir()):
        for path in sorted((MIRROR / folder).glob("*/*.json")):
            if path.name == "model_meta.json":
                continue
            doc = json.loads(path.read_bytes())
            if "scores" not in doc:
                continue
            meta = json.loads((path.parent / "model_meta.json").read_bytes())
            for split, subsets in doc["scores"].items():
                for subset in subsets:
                    add(meta["name"], path.parent.name, doc["task_name"], split, subset["hf_subset"],
                        subset["main_score"])
    # An external copy that loses to the real revision, and a dev split that loses to test.
    add("BAAI/bge-base-en-v1.5", "external", "NFCorpus", "test", "default", 0.1111)
    add("BAAI/bge-base-en-v1.5", "a5beb1e3e68b9ab74eb54cfd186867f64f240e1a", "NFCorpus", "dev", "default", 0.2222)
    buffer = io.BytesIO()
    pq.write_table(pa.table(rows), buffer)
    return buffer.getvalue()


def _hf() -> list[dict[str, Any]]:
    parquet = _parquet()
    info = {"_id": "65f0c0ffee", "id": "mteb/results", "author": "mteb", "sha": DATASET_SHA,
            "lastModified": "2026-11-20T08:10:00.000Z", "private": False, "gated": False, "disabled": False,
            "downloads": 1234, "likes": 12, "tags": ["license:cc0-1.0"],
            "siblings": [{"rfilename": ".gitattributes"}, {"rfilename": "README.md"},
                         {"rfilename": "data/train-00000-of-00001.parquet"}]}
    tree = [
        {"type": "file", "oid": _sha("gitattributes"), "size": 2307, "path": ".gitattributes"},
        {"type": "file", "oid": _sha("readme"), "size": 512, "path": "README.md"},
        {"type": "directory", "oid": _sha("data"), "size": 0, "path": "data"},
        {"type": "file", "oid": _sha("parquet"), "size": len(parquet), "path": "data/train-00000-of-00001.parquet",
         "lfs": {"oid": hashlib.sha256(parquet).hexdigest(), "size": len(parquet), "pointerSize": 134}},
    ]

    def hub(body: bytes) -> dict[str, list[str]]:
        return {"Content-Type": ["application/json; charset=utf-8"], "Content-Length": [str(len(body))],
                "X-Request-Id": ["Root=1-65f0c0ff-recsys"], "RateLimit": ['"api";r=499;t=300'],
                "RateLimit-Policy": ['"fixed window";"api";q=500;w=300'], "Vary": ["Origin"]}

    info_body = json.dumps(info).encode()
    tree_body = json.dumps(tree).encode()
    parquet_headers = {"Content-Type": ["application/octet-stream"], "Content-Length": [str(len(parquet))],
                       "ETag": [f'"{hashlib.sha256(parquet).hexdigest()}"'], "X-Repo-Commit": [DATASET_SHA],
                       "Accept-Ranges": ["bytes"]}
    return [
        _interaction(HF_API, 200, info_body, hub(info_body)),
        _interaction(f"{HF_API}/tree/{DATASET_SHA}?recursive=true", 200, tree_body, hub(tree_body)),
        _interaction(f"{HF_RESOLVE}/{DATASET_SHA}/data/train-00000-of-00001.parquet", 200, parquet, parquet_headers),
    ]


def _write(name: str, interactions: list[dict[str, Any]]) -> None:
    with open(OUT / name, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"interactions": interactions, "version": 1}, handle, sort_keys=False, allow_unicode=True)


def main() -> None:
    _write("mteb_github_first.yaml", _walk(COMMIT_1, None, None, 60))
    _write("mteb_github_second.yaml", _walk(COMMIT_2, "BAAI__bge-base-en-v1.5", {"BAAI__bge-base-en-v1.5"}, 30))
    _write("mteb_github_ratelimit.yaml", _rate_limited())
    _write("mteb_hf_all.yaml", _hf())


if __name__ == "__main__":
    main()
