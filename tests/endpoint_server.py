"""A local server speaking the Inference Endpoints contract for a custom `handler.py`.

What huggingface-inference-toolkit (the endpoints' serving container, not on PyPI) does with a
request, and nothing more: it imports `handler.py` from the model repo, builds
`EndpointHandler(repo path)`, and for each POST turns the body into the handler's `data` —
`application/json` bodies are parsed as they are, `image/*` bodies are opened with PIL and
converted to RGB (`Image.open(BytesIO(body)).convert("RGB")`, the toolkit's image deserializer) —
then answers the handler's result as JSON, or status 400 with `{"error": message}` when it raises.
Clients such as `huggingface_hub.InferenceClient(model=url)` talk to it as to a deployed endpoint.
"""

from __future__ import annotations

import importlib.util
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _load_handler(repo: Path):
    spec = importlib.util.spec_from_file_location(f"endpoint_handler_{id(repo)}", repo / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EndpointHandler(str(repo))


def _request_data(content_type: str, body: bytes):
    from PIL import Image

    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        return json.loads(body)
    if kind.startswith("image/"):
        return {"inputs": Image.open(io.BytesIO(body)).convert("RGB")}
    raise ValueError(f"content type {content_type!r} is not supported")


class EndpointServer:
    """`EndpointServer(repo).start()`; `.url` is what a client is given as the model."""

    def __init__(self, repo):
        handler = _load_handler(Path(repo))

        class Requests(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    status, answer = 200, handler(_request_data(self.headers.get("Content-Type", ""), body))
                except Exception as err:  # noqa: BLE001 - the toolkit answers every failure as a 400
                    status, answer = 400, {"error": str(err)}
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.handler = handler
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Requests)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "EndpointServer":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
