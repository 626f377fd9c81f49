"""Downloads resume: a dropped connection continues its ``.part`` file with an HTTP Range request.

Each test runs :func:`vadbench.datasets.sources.download` against a small HTTP server on 127.0.0.1
whose misbehaviour it chooses (drop the connection part way, ignore Range, send too much).
"""

import hashlib
import http.server
import logging
import re
import threading
from dataclasses import dataclass, field

import pytest

from vadbench.datasets import sources
from vadbench.datasets.sources import download
from vadbench.errors import DatasetError

BODY = bytes(range(256)) * 800  # 204,800 bytes
SHA = hashlib.sha256(BODY).hexdigest()
HALF = len(BODY) // 2


@dataclass
class Behaviour:
    """What the server does; ``ranges`` lists the Range header of every request it saw (``None``: none)."""

    honour_range: bool = True
    drop_after: list[int] = field(default_factory=list)  # per response: body bytes written before closing
    chunked_extra: int | None = None  # chunked reply: Content-Length of the body, then this many bytes more
    declare_length: bool = True
    ranges: list[str | None] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        how: Behaviour = self.server.behaviour
        requested = self.headers.get("Range")
        how.ranges.append(requested)
        start = int(re.fullmatch(r"bytes=(\d+)-", requested)[1]) if requested and how.honour_range else 0
        if start >= len(BODY):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(BODY)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = BODY[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(BODY) - 1}/{len(BODY)}")
        if how.declare_length:
            self.send_header("Content-Length", str(len(payload)))
        if how.chunked_extra is not None:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (payload, b"x" * how.chunked_extra):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.end_headers()
        if how.drop_after:
            self.wfile.write(payload[: how.drop_after.pop(0)])
            self.wfile.flush()
            self.close_connection = True  # the rest of the body never comes
            return
        self.wfile.write(payload)


@pytest.fixture
def serve():
    """``serve(Behaviour(...))`` -> the URL of a file served that way; servers stop after the test."""
    servers = []

    def start(behaviour: Behaviour) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.behaviour = behaviour
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()  # quick shutdown
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/data.tar"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    """No backoff, a progress line per 16 KiB chunk, and a short socket timeout, so nothing can hang."""
    monkeypatch.setattr(sources, "_BACKOFF_S", 0.0)
    monkeypatch.setattr(sources, "_PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(sources, "_CHUNK", 1 << 14)
    monkeypatch.setattr(sources, "_TIMEOUT_S", 5)


@pytest.fixture
def log_text(caplog):
    caplog.set_level(logging.INFO, logger="vadbench")
    return lambda: caplog.text


def test_dropped_connection_resumes_at_the_byte_it_stopped(tmp_path, serve, log_text):
    how = Behaviour(drop_after=[HALF])
    target = tmp_path / "download/data.tar"
    assert download(serve(how), target, SHA, "mini") == target
    assert how.ranges == [None, f"bytes={HALF}-"]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == SHA
    assert not target.with_name("data.tar.part").exists()
    text = log_text()
    assert f"connection closed after {HALF:,} of {len(BODY):,} bytes" in text
    assert f"resuming {target}.part at byte {HALF:,} of {len(BODY):,} (50%)" in text
    assert re.search(r"downloaded 0\.\d of 0\.2 MB \(\d+%\), [\d.]+ MB/s, ETA \d:\d\d:\d\d", text)


def test_server_that_ignores_range_is_downloaded_again_from_zero(tmp_path, serve, log_text):
    how = Behaviour(honour_range=False, drop_after=[HALF])
    target = tmp_path / "data.tar"
    download(serve(how), target, SHA, "mini")
    assert how.ranges == [None, f"bytes={HALF}-"]
    assert target.read_bytes() == BODY
    assert (
        f"ignored the request to resume at byte {HALF:,} (status 200, the whole file): starting over from zero"
        in log_text()
    )


def test_part_left_by_an_earlier_run_is_resumed(tmp_path, serve, log_text):
    target = tmp_path / "data.tar"
    target.with_name("data.tar.part").write_bytes(BODY[:70_000])  # a job killed at 70,000 bytes
    how = Behaviour()
    download(serve(how), target, SHA, "mini")
    assert how.ranges == ["bytes=70000-"]
    assert target.read_bytes() == BODY
    assert "continuing" in log_text() and f"resuming {target}.part at byte 70,000" in log_text()


def test_resumed_part_with_wrong_bytes_fails_its_checksum_and_is_removed(tmp_path, serve):
    target = tmp_path / "data.tar"
    part = target.with_name("data.tar.part")
    part.write_bytes(bytes(HALF))  # zeros where the file's first half should be
    how = Behaviour()
    url = serve(how)
    with pytest.raises(DatasetError, match=re.escape(f"{part}: SHA-256 mismatch: expected {SHA}, got ")) as err:
        download(url, target, SHA, "mini")
    assert f"resumed at byte {HALF:,}" in str(err.value) and "the partial file is removed" in str(err.value)
    assert not part.exists() and not target.exists()
    download(url, target, SHA, "mini")  # the next run starts from zero, not from the bad bytes
    assert how.ranges == [f"bytes={HALF}-", None]
    assert target.read_bytes() == BODY


@pytest.mark.parametrize("declare_length", [True, False])
def test_server_sending_more_than_it_declared_is_refused(tmp_path, serve, monkeypatch, declare_length):
    """Chunked, so nothing but vadbench's own count stops it: after Content-Length, or past the cap."""
    monkeypatch.setattr(sources, "MAX_DOWNLOAD_BYTES", len(BODY))
    target = tmp_path / "data.tar"
    url = serve(Behaviour(chunked_extra=100_000, declare_length=declare_length))
    promised = f"the {len(BODY):,} bytes it declared" if declare_length else f"{len(BODY):,} bytes (MAX_DOWNLOAD_BYTES)"
    with pytest.raises(DatasetError, match=re.escape(f"{url}: the server sent more than {promised}")):
        download(url, target, SHA, "mini")
    assert not list(tmp_path.iterdir()), "neither the file nor a part is left"


def test_complete_part_is_used_after_a_416_only_if_its_checksum_matches(tmp_path, serve, log_text):
    target = tmp_path / "data.tar"
    part = target.with_name("data.tar.part")
    part.write_bytes(BODY)  # killed between the last byte and the rename
    how = Behaviour()
    download(serve(how), target, SHA, "mini")
    assert how.ranges == [f"bytes={len(BODY)}-"] and target.read_bytes() == BODY
    part.write_bytes(BODY + b"junk")  # longer than the file: not it
    target.unlink()
    download(serve(how), target, SHA, "mini")
    assert how.ranges[1:] == [f"bytes={len(BODY) + 4}-", None] and target.read_bytes() == BODY
    assert "416 Range Not Satisfiable) and the kept bytes do not match the pinned SHA-256: starting over" in log_text()


def test_connection_dropped_on_every_attempt_keeps_the_part_for_the_next_run(tmp_path, serve):
    how = Behaviour(drop_after=[50_000, 50_000, 50_000])
    target = tmp_path / "data.tar"
    url = serve(how)
    with pytest.raises(DatasetError) as err:
        download(url, target, SHA, "mini")
    message = str(err.value)
    assert f"cannot download {url} (connection closed after 150,000 of {len(BODY):,} bytes; 3 attempts)" in message
    assert f"Download it by hand from {url} and put it at {target.resolve()}" in message
    assert f"The 150,000 bytes received so far stay in {target}.part, and the next run resumes" in message
    assert how.ranges == [None, "bytes=50000-", "bytes=100000-"]
    download(url, target, SHA, "mini")
    assert how.ranges[-1] == "bytes=150000-" and target.read_bytes() == BODY
