"""`mnist-digits data download` against a local HTTP server: mirrors that 403, truncate, send the
wrong bytes, send broken gzip, hang, and one that works. Only 127.0.0.1 is ever contacted."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import time
from pathlib import Path

import pytest
from helpers import one_line_error

from mnist_digits import data, download
from mnist_digits.cli import main
from mnist_digits.errors import DataError

NAMES = list(download.PUBLISHED_GZ_SHA256)
GOOD = {name: (data.default_data_dir() / name).read_bytes() for name in NAMES}
# The vendored files stand in for the originals, so their own hashes are "the published" ones.
GOOD_SHA256 = {name: hashlib.sha256(content).hexdigest() for name, content in GOOD.items()}
BROKEN_GZIP = GOOD["t10k-labels-idx1-ubyte.gz"][:40] + bytes(100)


class Handler(http.server.BaseHTTPRequestHandler):
    """/<mode>/<file name>; every request is logged in `server.requests`."""

    def do_GET(self):
        self.server.requests.append(self.path)
        _, mode, name = self.path.split("/", 2)
        if name not in GOOD or mode == "missing":
            self.send_error(404)
            return
        if mode == "forbidden":
            self.send_error(403, "Forbidden")
            return
        if mode == "slow":
            time.sleep(3)
        if mode == "cut":  # promises the whole file, sends half, hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(GOOD[name])))
            self.end_headers()
            self.wfile.write(GOOD[name][: len(GOOD[name]) // 2])
            self.close_connection = True
            return
        body = {"good": GOOD[name], "slow": GOOD[name], "wrong": bytes(len(GOOD[name])),
                "truncated": GOOD[name][: len(GOOD[name]) // 2], "badgzip": BROKEN_GZIP}[mode]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def mirror(server, mode: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{mode}/"


def fetch(server, dest: Path, modes, **kwargs):
    return download.download_mnist(dest, mirrors=[mirror(server, m) for m in modes],
                                   sha256=GOOD_SHA256, timeout=1.0, **kwargs)


def assert_clean(dest: Path) -> None:
    """No partial or temporary file was left behind."""
    leftovers = [p.name for p in dest.iterdir() if p.name not in GOOD]
    assert leftovers == []


@pytest.mark.parametrize("bad", ["forbidden", "truncated", "cut", "wrong", "slow", "missing"])
def test_a_failing_mirror_falls_through_to_the_next(server, tmp_path, bad):
    outcome = fetch(server, tmp_path, [bad, "good"])
    assert set(outcome.values()) == {mirror(server, "good")}
    assert data.load_mnist(tmp_path)[1][0].shape == (10000, 28, 28)
    assert_clean(tmp_path)


def test_a_broken_gzip_with_the_expected_hash_is_still_refused(server, tmp_path):
    # The bytes match the expected hash but do not decompress: only the gzip check catches it.
    sha256 = {name: hashlib.sha256(BROKEN_GZIP).hexdigest() for name in NAMES}
    with pytest.raises(DataError, match="not a whole gzip file"):
        download.download_mnist(tmp_path, mirrors=[mirror(server, "badgzip")], sha256=sha256,
                                timeout=1.0)
    assert list(tmp_path.iterdir()) == []


def test_every_mirror_failing_is_one_error_listing_each_attempt(server, tmp_path):
    with pytest.raises(DataError) as info:
        fetch(server, tmp_path, ["forbidden", "truncated", "wrong"])
    message = str(info.value)
    assert "HTTP 403" in message and message.count("SHA-256") >= 2
    assert mirror(server, "forbidden") in message and mirror(server, "wrong") in message
    assert "copy the four MNIST .gz files" in message
    assert list(tmp_path.iterdir()) == []


def test_files_that_verify_are_kept_and_broken_ones_replaced(server, tmp_path):
    fetch(server, tmp_path, ["good"])
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    server.requests.clear()
    outcome = fetch(server, tmp_path, ["good"])
    assert outcome["t10k-labels-idx1-ubyte.gz"] == mirror(server, "good")
    assert [v for k, v in outcome.items() if k != "t10k-labels-idx1-ubyte.gz"] == ["present"] * 3
    assert server.requests == ["/good/t10k-labels-idx1-ubyte.gz"]
    data.load_mnist(tmp_path)


def test_an_interrupted_download_leaves_no_partial_file(server, tmp_path, monkeypatch):
    real_fetch = download._fetch

    def crash_midway(url, tmp, *, timeout):
        real_fetch(url, tmp, timeout=timeout)
        raise KeyboardInterrupt  # e.g. Ctrl-C after the bytes arrived, before verification

    monkeypatch.setattr(download, "_fetch", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        fetch(server, tmp_path, ["good"])
    assert list(tmp_path.iterdir()) == []


def test_cli_download_failure_is_one_clear_error(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(download, "download_mnist", functools.partial(
        download.download_mnist, mirrors=(mirror(server, "forbidden"),)))
    code = main(["data", "download", "--dest", str(tmp_path / "mnist"), "--timeout", "1"])
    one_line_error(capsys, code, 1, "mnist-digits data: error: could not download", "HTTP 403")


def test_cli_download_then_verify(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(download, "download_mnist", functools.partial(
        download.download_mnist, mirrors=(mirror(server, "good"),), sha256=GOOD_SHA256))
    dest = tmp_path / "mnist"
    assert main(["data", "download", "--dest", str(dest)]) == 0
    assert main(["data", "verify", "--data-dir", str(dest)]) == 0
    assert "SHA-256 verified" in capsys.readouterr().out


def test_the_real_mirrors_are_https_folders_that_the_data_readme_names():
    # Checked, never contacted: the suite runs with the network blocked (pytest-socket). A
    # mirror changed in the code and not in the data's README (or the reverse) fails here.
    data_dir = Path(__file__).parents[2] / "data" / "mnist"
    readme = (data_dir / "README.md").read_text()
    assert download.MIRRORS
    for mirror_url in download.MIRRORS:
        assert mirror_url.startswith("https://") and mirror_url.endswith("/"), mirror_url
        assert mirror_url in readme, mirror_url
    sums = (data_dir / "SHA256SUMS").read_text()
    for name, sha in download.PUBLISHED_GZ_SHA256.items():
        assert f"{sha}  {name} (original" in sums
