"""A small Hugging Face Hub stand-in on 127.0.0.1, speaking the HTTP protocol the real clients use.

The Hub is unreachable here, and mocking `huggingface_hub` functions would prove nothing, so the
tests point the unmodified clients (`huggingface_hub`, `datasets`, Keras's `hf://`, the legacy
`from_pretrained_keras`) at this server with HF_ENDPOINT. It keeps repos in memory as a chain of
commits, answers `preupload` with regular (inline) uploads so no LFS or Xet storage is needed, and
can be told to fail (401, 404, 500, or a stall mid-commit) to test how clients report faults.
Data shards go through the LFS batch protocol (basic transfer); the Xet protocol is not spoken,
so the tests set HF_HUB_DISABLE_XET=1, a documented client switch.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TOKEN = "hf_local_test_token_not_a_real_secret"
USER = "tester"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool = False
    commits: dict[str, dict] = field(default_factory=dict)  # sha -> {"sha", "files": {path: bytes}, "message"}
    branches: dict[str, str] = field(default_factory=dict)  # name -> head sha
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def head(self) -> dict:
        return self.commits[self.branches["main"]]

    def at(self, revision: str) -> dict | None:
        revision = "main" if revision == "HEAD" else revision
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision)

    def add_commit(self, branch: str, files: dict[str, bytes], message: str) -> str:
        sha = _sha(self.repo_id, len(self.commits), json.dumps(sorted(files)), message)
        self.commits[sha] = {"sha": sha, "files": files, "message": message}
        self.branches[branch] = sha
        return sha


@dataclass
class Fault:
    """Make the next matching request fail: `status` (401, 404, 500) or `stall` seconds; `skip`
    lets that many matching requests through first."""

    on: str  # "whoami", "create", "preupload", "commit", "info", "resolve"
    status: int | None = None
    stall: float = 0.0
    times: int = 1
    skip: int = 0


class HubServer:
    def __init__(self):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.faults: list[Fault] = []
        self.blobs: dict[str, bytes] = {}  # LFS objects by sha256
        self.requests: list[str] = []
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> "HubServer":
        self._thread.start()
        deadline = time.time() + 20
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("the local Hub server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def files(self, repo_type: str, repo_id: str) -> dict[str, bytes]:
        return dict(self.repos[(repo_type, repo_id)].head["files"])

    # --- protocol ---------------------------------------------------------------------------

    def _fault(self, kind: str):
        for fault in self.faults:
            if fault.on == kind and fault.skip > 0:
                fault.skip -= 1
            elif fault.on == kind and fault.times > 0:
                fault.times -= 1
                if fault.stall:
                    time.sleep(fault.stall)
                if fault.status:
                    codes = {401: "Invalid credentials", 404: "RepoNotFound", 500: "Internal Error"}
                    return JSONResponse({"error": codes.get(fault.status, "error")}, status_code=fault.status,
                                        headers={"X-Error-Code": codes.get(fault.status, "Error").replace(" ", "")})
        return None

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {TOKEN}"

    def _repo(self, request: Request) -> Repo | None:
        p = request.path_params
        rtype = p.get("rtype", "models").rstrip("s")
        return self.repos.get((rtype, f"{p['ns']}/{p['name']}"))

    def _writable(self, request: Request) -> tuple[Repo | None, Response | None]:
        """The repo a write request names, or the response refusing it (401, 404)."""
        if not self._authorized(request):
            return None, JSONResponse({"error": "Invalid credentials"}, status_code=401)
        repo = self._repo(request)
        return (repo, None) if repo is not None else (None, self._not_found())

    @staticmethod
    def _not_found(what="Repository not found", code="RepoNotFound") -> JSONResponse:
        return JSONResponse({"error": what}, status_code=404, headers={"X-Error-Code": code, "X-Error-Message": what})

    def _app(self) -> Starlette:
        async def log(request: Request):
            self.requests.append(f"{request.method} {request.url.path}")

        async def whoami(request: Request):
            await log(request)
            if fault := self._fault("whoami"):
                return fault
            if not self._authorized(request):
                return JSONResponse({"error": "Invalid credentials in Authorization header"}, status_code=401)
            return JSONResponse({"type": "user", "name": USER, "orgs": [], "auth": {"accessToken": {"role": "write", "displayName": "test"}}})

        async def create(request: Request):
            await log(request)
            if fault := self._fault("create"):
                return fault
            if not self._authorized(request):
                return JSONResponse({"error": "Invalid credentials"}, status_code=401)
            body = await request.json()
            rtype = body.get("type") or "model"
            repo_id = f"{body.get('organization') or USER}/{body['name']}"
            key = (rtype, repo_id)
            prefix = "" if rtype == "model" else f"{rtype}s/"
            if key in self.repos:
                return JSONResponse({"error": "You already created this repo", "url": f"{self.url}/{prefix}{repo_id}"}, status_code=409)
            repo = Repo(rtype, repo_id, bool(body.get("private")))
            repo.add_commit("main", {".gitattributes": b"*.h5 filter=lfs diff=lfs merge=lfs -text\n"}, "initial commit")
            self.repos[key] = repo
            return JSONResponse({"url": f"{self.url}/{prefix}{repo_id}", "name": repo_id, "id": repo_id})

        async def preupload(request: Request):
            await log(request)
            if fault := self._fault("preupload"):
                return fault
            repo = self._repo(request)
            if repo is None:
                return self._not_found()
            body = await request.json()
            current = repo.at(request.path_params["rev"]) or repo.head
            answer = []
            for f in body["files"]:
                # Like the Hub's .gitattributes: data shards go through LFS, the rest inline.
                lfs = f["path"].endswith((".parquet", ".arrow"))
                entry = {"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
                if f["path"] in current["files"]:
                    data = current["files"][f["path"]]
                    entry["oid"] = hashlib.sha256(data).hexdigest() if lfs else git_blob_sha1(data)
                answer.append(entry)
            return JSONResponse({"files": answer})

        async def commit(request: Request):
            await log(request)
            repo, refused = self._writable(request)
            if refused:
                return refused
            body = (await request.body()).decode()
            # A stall or error here happens before anything is stored: a commit is all or nothing.
            if fault := self._fault("commit"):
                return fault
            branch = request.path_params["rev"]
            if branch not in repo.branches:
                return self._not_found(f"Invalid rev id: {branch}", "RevisionNotFound")
            files = dict(repo.at(branch)["files"])
            header = {}
            for line in body.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                value = item["value"]
                if item["key"] == "header":
                    header = value
                elif item["key"] == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] == "lfsFile":
                    if value["oid"] not in self.blobs:
                        return JSONResponse({"error": f"LFS object {value['oid']} was never uploaded"}, status_code=400)
                    files[value["path"]] = self.blobs[value["oid"]]
                elif item["key"] == "deletedFile":
                    files.pop(value["path"], None)
                elif item["key"] == "deletedFolder":
                    files = {k: v for k, v in files.items() if not k.startswith(value["path"].rstrip("/") + "/")}
                else:
                    return JSONResponse({"error": f"unsupported operation {item['key']}"}, status_code=400)
            sha = repo.add_commit(branch, files, header.get("summary", ""))
            prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
            return JSONResponse({"success": True, "commitOid": sha, "commitUrl": f"{self.url}/{prefix}{repo.repo_id}/commit/{sha}"})

        async def info(request: Request):
            await log(request)
            if fault := self._fault("info"):
                return fault
            repo = self._repo(request)
            if repo is None or (repo.private and not self._authorized(request)):
                return self._not_found()
            commit_ = repo.at(request.path_params.get("rev", "main"))
            if commit_ is None:
                return self._not_found("Invalid rev id", "RevisionNotFound")
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            return JSONResponse({
                "_id": repo.repo_id, "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0],
                "sha": commit_["sha"], "private": repo.private, "disabled": False, "gated": False,
                "lastModified": now, "createdAt": now, "tags": [], "downloads": 0, "likes": 0,
                "siblings": [{"rfilename": p, "size": len(b)} for p, b in sorted(commit_["files"].items())],
            })

        def _entries(files: dict[str, bytes], prefix: str, recursive: bool) -> list[dict]:
            prefix = prefix.strip("/")
            out, dirs = [], set()
            for path, data in sorted(files.items()):
                if prefix and not path.startswith(prefix + "/"):
                    continue
                rest = path[len(prefix) + 1:] if prefix else path
                parts = rest.split("/")
                for depth in range(1, len(parts)):
                    if recursive or depth == 1:
                        dirs.add("/".join(([prefix] if prefix else []) + parts[:depth]))
                if recursive or len(parts) == 1:
                    out.append({"type": "file", "path": path, "size": len(data), "oid": git_blob_sha1(data)})
            out += [{"type": "directory", "path": d, "size": 0, "oid": hashlib.sha1(d.encode()).hexdigest()} for d in sorted(dirs)]
            return out

        async def tree(request: Request):
            await log(request)
            repo = self._repo(request)
            if repo is None:
                return self._not_found()
            commit_ = repo.at(request.path_params["rev"])
            if commit_ is None:
                return self._not_found("Invalid rev id", "RevisionNotFound")
            path = request.path_params.get("path", "")
            entries = _entries(commit_["files"], path, request.query_params.get("recursive") in ("1", "true", "True"))
            if path and not entries and path not in commit_["files"]:
                return self._not_found(f"{path} does not exist", "EntryNotFound")
            return JSONResponse(entries)

        async def paths_info(request: Request):
            await log(request)
            repo = self._repo(request)
            if repo is None:
                return self._not_found()
            commit_ = repo.at(request.path_params["rev"])
            form = await request.form()
            wanted = form.getlist("paths")
            files = commit_["files"]
            out = []
            for p in wanted:
                p = p.strip("/")
                if p in files:
                    out.append({"type": "file", "path": p, "size": len(files[p]), "oid": git_blob_sha1(files[p])})
                elif any(k.startswith(p + "/") for k in files):
                    out.append({"type": "directory", "path": p, "size": 0, "oid": hashlib.sha1(p.encode()).hexdigest()})
            return JSONResponse(out)

        async def resolve(request: Request):
            await log(request)
            if fault := self._fault("resolve"):
                return fault
            p = request.path_params
            rtype = p.get("rtype", "models").rstrip("s")
            repo = self.repos.get((rtype, f"{p['ns']}/{p['name']}"))
            if repo is None or (repo.private and not self._authorized(request)):
                return self._not_found()
            commit_ = repo.at(p["rev"])
            if commit_ is None:
                return self._not_found("Invalid rev id", "RevisionNotFound")
            data = commit_["files"].get(p["path"])
            if data is None:
                return self._not_found(f"{p['path']} does not exist", "EntryNotFound")
            headers = {"X-Repo-Commit": commit_["sha"], "ETag": f'"{git_blob_sha1(data)}"', "Content-Length": str(len(data)),
                       "Accept-Ranges": "bytes"}
            if request.method == "HEAD":
                return Response(status_code=200, headers=headers)
            return Response(data, headers=headers, media_type="application/octet-stream")

        async def variables(request: Request):
            await log(request)
            repo, refused = self._writable(request)
            if refused:
                return refused
            body = await request.json()
            repo.variables[body["key"]] = body["value"]
            return JSONResponse({k: {"value": v} for k, v in repo.variables.items()})

        async def branch(request: Request):
            await log(request)
            repo, refused = self._writable(request)
            if refused:
                return refused
            name = request.path_params["branch"]
            if name in repo.branches:
                return JSONResponse({"error": "Reference already exists"}, status_code=409)
            repo.branches[name] = repo.branches["main"]
            return JSONResponse({})

        async def lfs_batch(request: Request):
            await log(request)
            if not self._authorized(request):
                return JSONResponse({"message": "Invalid credentials"}, status_code=401)
            body = await request.json()
            objects = []
            for obj in body["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"]}
                if obj["oid"] not in self.blobs:
                    entry["actions"] = {"upload": {"href": f"{self.url}/lfs-upload/{obj['oid']}"}}
                objects.append(entry)
            return JSONResponse({"transfer": "basic", "objects": objects})

        async def lfs_upload(request: Request):
            await log(request)
            data = await request.body()
            oid = request.path_params["oid"]
            if hashlib.sha256(data).hexdigest() != oid:
                return JSONResponse({"message": "sha256 mismatch"}, status_code=400)
            self.blobs[oid] = data
            return Response(status_code=200)

        async def validate_yaml(request: Request):
            await log(request)
            content = (await request.json())["content"]
            try:
                front = content.split("---", 2)[1] if content.startswith("---") else ""
                data = yaml.safe_load(front) if front else {}
                if data is not None and not isinstance(data, dict):
                    raise ValueError("the metadata must be a mapping")
            except (yaml.YAMLError, ValueError) as err:
                return JSONResponse({"errors": [{"message": str(err)}]}, status_code=400)
            return JSONResponse({"errors": [], "warnings": []})

        repo = "{rtype}/{ns}/{name}"
        routes = [
            Route("/api/whoami-v2", whoami),
            Route("/api/repos/create", create, methods=["POST"]),
            Route("/api/validate-yaml", validate_yaml, methods=["POST"]),
            Route(f"/api/{repo}/preupload/{{rev}}", preupload, methods=["POST"]),
            Route(f"/api/{repo}/commit/{{rev}}", commit, methods=["POST"]),
            Route(f"/api/{repo}/revision/{{rev}}", info),
            Route(f"/api/{repo}/tree/{{rev}}/{{path:path}}", tree),
            Route(f"/api/{repo}/tree/{{rev}}", tree),
            Route(f"/api/{repo}/paths-info/{{rev}}", paths_info, methods=["POST"]),
            Route(f"/api/{repo}/variables", variables, methods=["POST"]),
            Route(f"/api/{repo}/branch/{{branch}}", branch, methods=["POST"]),
            Route(f"/api/{repo}", info),
            Route("/lfs-upload/{oid}", lfs_upload, methods=["PUT"]),
            Route("/{rtype}/{ns}/{name}.git/info/lfs/objects/batch", lfs_batch, methods=["POST"]),
            Route("/{ns}/{name}.git/info/lfs/objects/batch", lfs_batch, methods=["POST"]),
            Route("/{rtype}/{ns}/{name}/resolve/{rev}/{path:path}", resolve, methods=["GET", "HEAD"]),
            Route("/{ns}/{name}/resolve/{rev}/{path:path}", resolve, methods=["GET", "HEAD"]),
        ]
        return Starlette(routes=routes)


def _sha(*parts) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
