"""A local HTTP server that answers like the Hugging Face Hub's file-resolve endpoint.

Only what huggingface_hub's hf_hub_download uses: HEAD/GET /{repo}/resolve/{rev}/{file}, with
X-Repo-Commit / ETag / Content-Length headers, and X-Error-Code for missing repos, revisions
and files and gated repos. A repository's files are kept per commit: `main` names the last one
added, and each commit id names its own files.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.fakes.server import LoopbackServer, QuietHandler

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(LoopbackServer):
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}  # the files at `main`
        self.heads: dict[str, str] = {}  # the commit `main` names
        self.commits: dict[tuple[str, str], dict[str, bytes]] = {}
        self.gated: set[str] = set()
        self.token = "hf_test_token"
        self.requests: list[tuple[str, str, str | None]] = []
        super().__init__(self._handler())

    def add(
        self, repo: str, files: dict[str, Any], gated: bool = False, commit: str = COMMIT
    ) -> None:
        """``files`` as the commit ``commit`` of ``repo``, which `main` now names."""
        self.repos[repo] = {
            name: (v if isinstance(v, bytes) else json.dumps(v).encode())
            for name, v in files.items()
        }
        self.heads[repo] = commit
        self.commits[(repo, commit)] = self.repos[repo]
        if gated:
            self.gated.add(repo)

    def _handler(self) -> type[QuietHandler]:
        hub = self

        class Handler(QuietHandler):
            def _answer(self, with_body: bool) -> None:
                auth = self.headers.get("Authorization")
                hub.requests.append((self.command, self.path, auth))
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._error(404, "RepoNotFound", with_body)
                repo, rev, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                if repo not in hub.repos:
                    return self._error(404, "RepoNotFound", with_body)
                if repo in hub.gated and auth != f"Bearer {hub.token}":
                    return self._error(401, "GatedRepo", with_body)
                commit = hub.heads[repo] if rev == "main" else rev
                files = hub.commits.get((repo, commit))
                if files is None:
                    return self._error(404, "RevisionNotFound", with_body)
                body = files.get(filename)
                if body is None:
                    return self._error(404, "EntryNotFound", with_body)
                self.send_response(200)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", '"' + hashlib.sha1(body).hexdigest() + '"')
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def _error(self, status: int, code: str, with_body: bool) -> None:
                body = json.dumps({"error": code}).encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:
                self._answer(with_body=False)

            def do_GET(self) -> None:
                self._answer(with_body=True)

        return Handler
