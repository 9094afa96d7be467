"""Shared fixtures: the real MedMNIST files and a local HTTP server for download tests."""

from __future__ import annotations

import http.server
import importlib.util
import os
import threading
from pathlib import Path

import pytest

from medsymmflow.data import DatasetUnavailableError, load_medmnist

REQUIRE_REAL = os.environ.get("MEDSYMMFLOW_REQUIRE_REAL_DATA") == "1"


def load_benchmark(name: str):
    """A script of ``benchmarks/`` (not a package) as a module, e.g. ``load_benchmark("recipe_study")``."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_train(data_root, steps: int = 2) -> list[str]:
    """``medsymmflow train`` arguments of a tiny run on BreastMNIST's synthetic twin (add ``--out``)."""
    return [
        "train",
        "--dataset",
        "breastmnist",
        "--steps",
        str(steps),
        "--batch-size",
        "4",
        "--checkpoint-every",
        "2",
        "--allow-synthetic",
        "--data-root",
        str(data_root),
    ]


@pytest.fixture(scope="session")
def real_data():
    """Load a real dataset by flag; skip if unavailable, fail when CI requires the files."""
    cache = {}

    def load(flag: str):
        if flag not in cache:
            try:
                cache[flag] = load_medmnist(flag, progress=False)
            except DatasetUnavailableError as error:
                if REQUIRE_REAL:
                    pytest.fail(f"MEDSYMMFLOW_REQUIRE_REAL_DATA=1 but {flag} is unavailable: {error}")
                pytest.skip(f"real {flag} unavailable: {error}")
        return cache[flag]

    return load


class _Server:
    """Serves ``routes[path] = (body, declared_length)`` on 127.0.0.1.

    A declared length larger than the body makes the server close the connection
    early, exactly like an interrupted download.
    """

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, int]] = {}
        routes = self.routes

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                if self.path not in routes:
                    self.send_error(404)
                    return
                body, length = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"


@pytest.fixture
def http_server():
    server = _Server()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def shared_file(real_data):
    """Path of a real official file (PneumoniaMNIST, 28 px)."""

    def path(flag: str = "pneumoniamnist") -> Path:
        from medsymmflow.data import fetch

        real_data(flag)
        return fetch(flag, download_missing=False)

    return path
