"""Lists of image URLs as a source, downloaded from a real HTTP server on loopback."""

import io
import itertools
import json
import threading
import time
import urllib.request
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dataset_assets.failures import failure_cause
from dataset_assets.ingest.locate import check_source, open_entries
from dataset_assets.ingest.parquet_lists import S3RangeFile, read_parquet_list
from dataset_assets.ingest.sources import SourceError
from dataset_assets.ingest.urls import (
    MAX_CAPTION,
    BlockedHostError,
    CheckedRedirects,
    DownloadSettings,
    connect_public,
    read_url_list,
)
from dataset_assets.policy import DeploymentPolicy
from dataset_assets.storage.s3 import s3_client
from dataset_assets_tests.images import photo


def image_bytes(seed: int, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    photo(64, 48, seed).save(out, fmt)
    return out.getvalue()


class ImageServer(ThreadingHTTPServer):
    """Serves images, errors, a flaky path, a redirect and a slow path; counts every hit."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that stops reading (the size limit, a timeout) is expected here."""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: ImageServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.hits[self.path] += 1
            hits = self.server.hits[self.path]
        if self.path.startswith("/img/"):
            self._send(200, image_bytes(zlib.crc32(self.path.encode())), "image/png")
        elif self.path == "/photo?id=7":
            self._send(200, image_bytes(7, "JPEG"), "image/jpeg")
        elif self.path == "/flaky.png":
            if hits < 3:
                self._send(503, b"busy", "text/plain")
            else:
                self._send(200, image_bytes(3), "image/png")
        elif self.path == "/down.png":
            self._send(503, b"down", "text/plain")
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/img/redirected.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/huge.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            for _ in range(64):  # no Content-Length: the limit holds while reading
                self.wfile.write(b"\0" * 65536)
        elif self.path == "/slow.png":
            time.sleep(4)
            self._send(200, image_bytes(5), "image/png")
        elif self.path == "/drip.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "40")
            self.end_headers()
            for _ in range(40):  # a byte every 0.1 s: no single read ever times out
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        elif self.path == "/drip-headers.png":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Padding: " + b"x" * 40
            for byte in head:  # the headers never end: a byte every 0.1 s
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.1)
        elif self.path == "/page.jpg":
            self._send(200, b"<html>not an image</html>", "text/html")
        else:
            self._send(404, b"no such image", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[ImageServer]:
    httpd = ImageServer()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_txt_csv_tsv_and_jsonl_lists_give_rows_and_report_bad_lines() -> None:
    text = ["# a comment\n", "\n", "https://a.example/x/cat.jpg\n", "file:///etc/passwd\n"]
    text += ["http://[::1\n", "http://h:99999/a.png\n"]
    rows = list(read_url_list(text, "urls.txt"))
    urls = [getattr(row, "url", None) for row in rows]
    assert urls == ["https://a.example/x/cat.jpg", None, None, None]
    assert rows[0].line == 3 and rows[0].path.startswith("cat-") and rows[0].path.endswith(".jpg")
    assert rows[1].reason == "bad_url" and "line 4" in rows[1].message
    assert [row.reason for row in rows[2:]] == ["bad_url", "bad_url"]
    assert "not a valid URL" in rows[2].message and "line 6" in rows[3].message

    csv_rows = list(
        read_url_list(["URL,Label\n", "http://h/a.png,cat\n", "ftp://h/b.png,dog\n"], "l.csv")
    )
    assert csv_rows[0].label == "cat" and csv_rows[0].path.startswith("cat/a-")
    assert csv_rows[1].reason == "bad_url" and "line 3" in csv_rows[1].message

    tsv_rows = list(read_url_list(["url\tlabel\n", "http://h/a.png\t../../etc\n"], "l.tsv"))
    assert tsv_rows[0].label == "etc"  # a label never escapes the dataset

    jsonl = ['{"url": "http://h/1.png", "label": "bird"}\n', "{not json\n", '{"href": "x"}\n']
    json_rows = list(read_url_list(jsonl, "l.jsonl"))
    assert json_rows[0].label == "bird"
    assert [row.reason for row in json_rows[1:]] == ["bad_url", "bad_url"]


def test_a_csv_list_without_a_url_column_fails_before_any_download(tmp_path: Path) -> None:
    listing = tmp_path / "images.csv"
    listing.write_text("link,label\nhttp://h/a.png,cat\n")
    with pytest.raises(SourceError, match="no 'url' column \\(columns: link, label\\)"):
        check_source(str(listing), lambda: None)
    with pytest.raises(SourceError, match="No such file"):
        check_source(str(tmp_path / "missing.txt"), lambda: None)


def _download(urls: list[str], tmp_path: Path, **settings: Any) -> dict[str, Any]:
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(f"{url}\n" for url in urls))
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    found = {}
    defaults = {"allow_private_hosts": True, "timeout_s": 2.0}
    for entry in open_entries(
        str(listing), lambda: None, spool, DownloadSettings(**{**defaults, **settings})
    ):
        body = entry.open().read() if entry.open else None
        found[entry.origin] = (entry.path, entry.reason, entry.message, body)
    assert not list(spool.iterdir()), "every download's spool file is removed"
    return found


def test_downloads_retry_follow_redirects_and_name_every_failure(
    server: ImageServer, tmp_path: Path
) -> None:
    base = server.base
    urls = [
        f"{base}/img/a.png",
        f"{base}/photo?id=7",
        f"{base}/flaky.png",
        f"{base}/redirect",
        f"{base}/missing.png",
        f"{base}/down.png",
        f"{base}/huge.png",
        f"{base}/slow.png",
    ]
    found = _download(urls, tmp_path, retries=2, max_bytes=1_000_000, workers=4)

    path, reason, _, body = found[f"{base}/img/a.png"]
    assert reason is None and body == image_bytes(zlib.crc32(b"/img/a.png"))
    path, reason, _, body = found[f"{base}/photo?id=7"]
    assert path.startswith("photo-") and path.endswith(".jpg") and body[:2] == b"\xff\xd8"
    assert found[f"{base}/flaky.png"][1] is None and server.hits["/flaky.png"] == 3
    assert found[f"{base}/redirect"][3] == image_bytes(zlib.crc32(b"/img/redirected.png"))

    _, reason, message, _ = found[f"{base}/missing.png"]
    assert reason == "download_failed" and "HTTP 404" in message and "line 5" in message
    assert server.hits["/missing.png"] == 1, "a 404 is not retried"
    _, reason, message, _ = found[f"{base}/down.png"]
    assert reason == "download_failed" and "HTTP 503" in message and "after 3 attempts" in message
    assert found[f"{base}/huge.png"][1] == "file_too_large"
    _, reason, message, _ = found[f"{base}/slow.png"]
    assert reason == "download_failed" and "timed out" in message


def test_loopback_private_and_metadata_hosts_are_refused_by_default(
    server: ImageServer, tmp_path: Path
) -> None:
    urls = [
        f"{server.base}/img/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/x.png",
    ]
    found = _download(urls, tmp_path, allow_private_hosts=False)

    assert {entry[1] for entry in found.values()} == {"blocked_host"}
    assert (
        "169.254.169.254" in found[urls[1]][2]
        and "DATASET_ASSETS_ALLOW_PRIVATE_HOSTS" in found[urls[1]][2]
    )
    assert not server.hits, "nothing was requested from a refused host"


def test_a_host_that_sends_a_byte_at_a_time_is_cut_off_at_the_deadline(
    server: ImageServer, tmp_path: Path
) -> None:
    drip_body, drip_headers = f"{server.base}/drip.png", f"{server.base}/drip-headers.png"
    started = time.monotonic()
    found = _download([drip_body, drip_headers], tmp_path, deadline_s=1.0, retries=2, workers=2)

    assert time.monotonic() - started < 3, "one deadline covers headers, body and retries"
    for url in (drip_body, drip_headers):
        _, reason, message, _ = found[url]
        assert reason == "download_failed" and "longer than 1 s" in message, message


def test_the_connection_refuses_a_name_that_turned_private_after_the_check(
    server: ImageServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the first lookup says public, the one the connection makes says private.

    No DNS server can be made to answer that way here, so the first check is switched off: a
    stand-in for the lookup that said "public". The connection must still refuse the host.
    """
    monkeypatch.setattr("dataset_assets.ingest.urls._check_host", lambda url, allow: None)
    url = f"{server.base}/img/a.png"
    found = _download([url], tmp_path, allow_private_hosts=False)

    assert found[url][1] == "blocked_host" and "127.0.0.1" in found[url][2]
    assert not server.hits
    with pytest.raises(BlockedHostError, match=r"non-public address 127\.0\.0\.1"):
        connect_public("127.0.0.1", server.server_address[1], 2.0)


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "non-public address 169.254.169.254"),
        ("http://127.0.0.1:1/x.png", "non-public address 127.0.0.1"),
        ("file:///etc/passwd", "only http and https are followed"),
    ],
)
def test_a_redirect_to_a_refused_host_or_scheme_is_not_followed(target: str, why: str) -> None:
    handler = CheckedRedirects(allow_private=False)
    request = urllib.request.Request("https://images.example/cat.jpg")
    with pytest.raises(BlockedHostError, match=why):
        handler.redirect_request(request, io.BytesIO(), 302, "Found", HTTPMessage(), target)


def test_a_labelled_url_list_becomes_a_labelled_dataset_with_urls_in_the_manifest(
    pipeline: Any, server: ImageServer, tmp_path: Path
) -> None:
    base = server.base
    listing = tmp_path / "images.csv"
    rows = [f"{base}/img/cat{i}.png,cat" for i in range(3)] + [
        f"{base}/img/dog{i}.png,dog" for i in range(2)
    ]
    rows += [f"{base}/missing.png,dog", f"{base}/page.jpg,cat", "gopher://old/x.png,cat"]
    listing.write_text("url,label\n" + "\n".join(rows) + "\n")
    request = {
        "request_id": "from-urls",
        "dataset_key": str(listing),
        "ingest": {"download_retries": 0},
    }
    pipeline.resources["policy"] = DeploymentPolicy(operator=True, allow_private_hosts=True)

    result = pipeline.run(request)

    assert result.success
    store = pipeline.metadata
    rejects = {
        doc["origin"]: doc["reject_reason"]
        for doc in store.iter_images("from-urls", status="rejected")
    }
    assert rejects == {
        f"{base}/missing.png": "download_failed",
        f"{base}/page.jpg": "not_an_image",
        "gopher://old/x.png": "bad_url",
    }
    outputs = pipeline.outputs("from-urls")
    manifest = [json.loads(line) for line in outputs["manifest.jsonl"].decode().splitlines()]
    assert Counter(line["label"] for line in manifest) == {"cat": 3, "dog": 2}
    assert {line["url"] for line in manifest} == {row.split(",")[0] for row in rows[:5]}
    assert sum(1 for key in outputs if key.startswith(("hot/cat/", "cold/cat/"))) == 3

    report = json.loads(pipeline.blobs.get_bytes("reports/from-urls/report.json"))
    for reason in ("download_failed", "not_an_image", "bad_url"):
        assert report["reject_reasons"][reason] == 1
    assert report["metrics"]["images_ingested"] == 8 and report["metrics"]["valid_images"] == 5

    again = pipeline.run(request)
    assert again.success
    assert store.count_images("from-urls") == 8, "a re-run keeps one record per URL"


def test_a_url_list_on_s3_is_streamed_and_a_missing_one_is_named(
    server: ImageServer, s3_endpoint: str, tmp_path: Path
) -> None:
    client = s3_client(
        s3_endpoint, "us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    bucket = f"lists-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    lines = [f'{{"url": "{server.base}/img/s3-{i}.png", "label": "s3"}}' for i in range(3)]
    client.put_object(Bucket=bucket, Key="lists/today.jsonl", Body="\n".join(lines).encode())
    url = f"s3://{bucket}/lists/today.jsonl"

    assert check_source(url, lambda: client) == url
    settings = DownloadSettings(allow_private_hosts=True)
    entries = open_entries(url, lambda: client, tmp_path, settings)
    found = {entry.origin: (entry.path, entry.open().read()) for entry in entries}

    assert len(found) == 3 and all(path.startswith("s3/s3-") for path, _ in found.values())
    assert found[f"{server.base}/img/s3-0.png"][1] == image_bytes(zlib.crc32(b"/img/s3-0.png"))
    with pytest.raises(SourceError, match=f"no such object in bucket '{bucket}'"):
        check_source(f"s3://{bucket}/lists/missing.txt", lambda: client)
    client.put_object(Bucket=bucket, Key="lists/links.csv", Body=b"link\nhttp://h/a.png\n")
    with pytest.raises(SourceError, match="no 'url' column"):
        check_source(f"s3://{bucket}/lists/links.csv", lambda: client)


def test_a_list_whose_urls_are_all_refused_fails_saying_why(
    pipeline: Any, server: ImageServer, tmp_path: Path
) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(f"{server.base}/img/{i}.png\n" for i in range(3)))

    result = pipeline.run({"request_id": "refused", "dataset_key": str(listing)})

    assert not result.success
    stage, cause = failure_cause(result.all_events)
    assert stage == "validated_images"
    assert cause == (
        "check invalid_ratio failed: 3 of 3 images rejected: blocked_host 3 (invalid ratio "
        "1.00, validation.max_invalid_ratio 0.50 (default); blocks: no image left)"
    )
    assert not server.hits


def write_parquet_list(path: Path, *groups: list[dict[str, Any]]) -> Path:
    """A Parquet file with one row group per list of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.Table.from_pylist(groups[0]).schema
    with pq.ParquetWriter(path, schema) as writer:
        for rows in groups:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    return path


def test_a_parquet_list_gives_rows_with_labels_and_captions_and_reports_bad_rows(
    tmp_path: Path,
) -> None:
    rows = [
        {"URL": "https://a.example/x/cat.jpg", "label": "cat", "caption": "a cat", "extra": 1},
        {"URL": "ftp://a.example/y.jpg", "label": "cat", "caption": None, "extra": 2},
        {"URL": None, "label": None, "caption": "no url", "extra": 3},
        {"URL": "https://a.example/d.png", "label": "../dog", "caption": "x" * 5000, "extra": 4},
    ]
    listing = write_parquet_list(tmp_path / "part-0.parquet", rows[:2], rows[2:])
    found = list(read_parquet_list(listing, str(listing)))

    assert [getattr(row, "url", None) for row in found] == [
        rows[0]["URL"],
        None,
        None,
        rows[3]["URL"],
    ]
    assert (found[0].line, found[0].label, found[0].caption) == (1, "cat", "a cat")
    assert found[0].path.startswith("cat/cat-")
    assert [found[1].reason, found[2].reason] == ["bad_url", "bad_url"]
    assert "line 2" in found[1].message and "line 3" in found[2].message
    assert found[3].label == "dog" and len(found[3].caption) == MAX_CAPTION


def test_a_parquet_list_without_a_url_column_or_not_parquet_fails_before_any_download(
    tmp_path: Path,
) -> None:
    listing = write_parquet_list(tmp_path / "links.parquet", [{"link": "http://h/a.png"}])
    with pytest.raises(SourceError, match="no 'url' column \\(columns: link\\)"):
        check_source(str(listing), lambda: None)
    (tmp_path / "fake.parquet").write_text("url\nhttp://h/a.png\n")
    with pytest.raises(SourceError, match=r"fake\.parquet' is not a Parquet file"):
        check_source(str(tmp_path / "fake.parquet"), lambda: None)
    with pytest.raises(SourceError, match="no such file"):
        check_source(str(tmp_path / "missing.parquet"), lambda: None)


def test_a_parquet_list_on_s3_is_read_by_byte_ranges_not_whole(
    server: ImageServer, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = s3_client(
        s3_endpoint, "us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    bucket = f"lists-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    rows = [
        {"url": f"{server.base}/img/pq-{i}.png", "label": "pq", "caption": f"photo {i}"}
        for i in range(3)
    ]
    filler = [
        [
            {"url": f"{server.base}/none/{uuid.uuid4().hex}.jpg", "label": "", "caption": ""}
            for _ in range(2000)
        ]
        for _ in range(50)
    ]
    listing = write_parquet_list(tmp_path / "laion.parquet", rows, *filler)
    client.upload_file(str(listing), bucket, "lists/laion.parquet")
    url = f"s3://{bucket}/lists/laion.parquet"
    fetched: list[int] = []
    read_range = S3RangeFile.readinto

    def counted(self: S3RangeFile, buffer: Any) -> int:
        fetched.append(read_range(self, buffer))
        return fetched[-1]

    monkeypatch.setattr(S3RangeFile, "readinto", counted)

    assert check_source(url, lambda: client) == url
    entries = open_entries(
        url, lambda: client, tmp_path, DownloadSettings(allow_private_hosts=True)
    )
    first = {}
    for entry in itertools.islice(entries, 100):  # downloads finish in any order
        if entry.caption:  # each entry is read before the next is asked for
            first[entry.caption] = (entry.path.split("/")[0], entry.open().read())
        if len(first) == 3:
            break
    entries.close()

    assert sorted(first) == ["photo 0", "photo 1", "photo 2"]
    assert first["photo 0"] == ("pq", image_bytes(zlib.crc32(b"/img/pq-0.png")))
    assert sum(fetched) < listing.stat().st_size / 4
    with pytest.raises(SourceError, match=f"no such object in bucket '{bucket}'"):
        check_source(f"s3://{bucket}/lists/missing.parquet", lambda: client)


def test_a_parquet_list_becomes_a_dataset_whose_outputs_keep_labels_and_captions(
    pipeline: Any, server: ImageServer, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    rows = [
        {
            "url": f"{server.base}/img/p{i}.png",
            "label": "cat" if i < 3 else "dog",
            "caption": f"p {i}",
        }
        for i in range(5)
    ]
    request = {
        "request_id": "from-parquet",
        "dataset_key": str(write_parquet_list(tmp_path / "urls.parquet", rows)),
        "ingest": {"download_retries": 0},
        "tiering": {"parquet_shard_rows": 10},
    }
    pipeline.resources["policy"] = DeploymentPolicy(operator=True, allow_private_hosts=True)

    assert pipeline.run(request).success

    outputs = pipeline.outputs("from-parquet")
    expected = {row["url"]: (row["label"], row["caption"]) for row in rows}
    manifest = [json.loads(line) for line in outputs["manifest.jsonl"].decode().splitlines()]
    assert {line["url"]: (line["label"], line["caption"]) for line in manifest} == expected
    table = pq.read_table(io.BytesIO(outputs["parquet/hot-00000.parquet"])).to_pylist()
    assert {row["url"]: (row["label"], row["caption"]) for row in table} == expected
