"""A list of image URLs (what img2dataset reads) as the entries of a dataset.

A `dataset_key` naming a `.txt` (one URL per line, `#` comments), `.csv` / `.tsv` (a `url`
column and optional `label` and `caption` columns), `.jsonl` (`{"url": ..., "label": ...}` per
line) or `.parquet` file (read by `parquet_lists`), local or on S3, is a list of images to
download. Downloads run in a bounded thread pool, each
streamed to a spool file with the size limit enforced as bytes arrive, and are retried with
backoff on timeouts, dropped connections, 429 and 5xx. A URL that cannot be fetched becomes a
rejected entry (`bad_url`, `blocked_host`, `download_failed`, `file_too_large`) naming the URL,
its line and the cause; it never fails the run.

Only http and https are fetched, and by default only from public addresses: a request cannot make
the pipeline read loopback, private or link-local hosts (a cloud metadata endpoint, say), nor be
redirected to one. The addresses are checked on the connection itself, so a name that resolves to
a public address first and a private one next (DNS rebinding) is refused too; through an HTTP
proxy, which resolves names itself, only the name is checked.

Each entry is named `<label>/<url stem>-<url hash><extension>`, so a label column gives folder
labels, the same URL always maps to the same image record, and the extension follows the
response's Content-Type.
"""

import csv
import hashlib
import http.client
import ipaddress
import json
import mimetypes
import re
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from functools import cache, partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from dataset_assets.ingest.sources import URL_LIST_SUFFIXES, Entry, SourceError
from dataset_assets.stages.pools import map_in_pool

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
CHUNK = 1024 * 1024
MAX_CAPTION = 4096
"""Characters of a caption kept: enough for alt text, bounded for the metadata store."""


@cache
def _user_agent() -> str:
    try:
        return f"dataset-assets/{version('dataset-assets')}"
    except PackageNotFoundError:
        return "dataset-assets"


@dataclass(frozen=True)
class DownloadSettings:
    """How the URLs of a list are fetched (the request's `ingest` section)."""

    workers: int = 16
    timeout_s: float = 10.0
    deadline_s: float = 120.0
    retries: int = 2
    max_bytes: int = 100 * 1024 * 1024
    allow_private_hosts: bool = False


@dataclass(frozen=True)
class UrlRow:
    """One line of a URL list."""

    line: int
    url: str
    label: str = ""
    caption: str = ""

    @property
    def path(self) -> str:
        """The entry's path in the dataset, before the response names its type."""
        parsed = PurePosixPath(unquote(urlsplit(self.url).path))
        suffix = parsed.suffix.lower() if parsed.suffix.lower() in IMAGE_SUFFIXES else ""
        return self.path_with(suffix)

    def path_with(self, suffix: str) -> str:
        stem = PurePosixPath(unquote(urlsplit(self.url).path)).stem
        stem = SAFE_NAME.sub("_", stem).strip("._")[:60] or "image"
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:10]
        name = f"{stem}-{digest}{suffix}"
        return f"{self.label}/{name}" if self.label else name


def is_url_list(name: str) -> bool:
    return name.lower().endswith(URL_LIST_SUFFIXES)


def _delimiter(name: str) -> str | None:
    """The column delimiter of a CSV or TSV list; None for the other kinds."""
    lowered = name.lower()
    return "\t" if lowered.endswith(".tsv") else "," if lowered.endswith(".csv") else None


def _check_header(first_line: str, name: str) -> None:
    """Fail before any download when a CSV/TSV list has no `url` column."""
    delimiter = _delimiter(name)
    if delimiter:
        columns = [c.strip().lower() for c in next(csv.reader([first_line], delimiter=delimiter))]
        if "url" not in columns:
            raise SourceError(
                f"URL list {name!r} has no 'url' column (columns: {', '.join(columns) or 'none'})"
            )


def read_url_list(lines: Iterable[str], name: str) -> Iterator[UrlRow | Entry]:
    """The rows of a URL list in file order; a line that is not a usable URL is a rejected entry."""
    delimiter = _delimiter(name)
    if delimiter:
        reader = csv.DictReader(lines, delimiter=delimiter)
        reader.fieldnames = [field.strip().lower() for field in reader.fieldnames or []]
        for record in reader:
            yield url_row(reader.line_num, record.get("url") or "", record)
    elif name.lower().endswith(".jsonl"):
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
                url = record["url"]
            except (ValueError, KeyError, TypeError) as error:
                yield _bad(number, text.strip()[:200], f"not a JSON object with 'url' ({error})")
                continue
            yield url_row(number, str(url), record)
    else:
        for number, text in enumerate(lines, start=1):
            url = text.strip()
            if url and not url.startswith("#"):
                yield url_row(number, url, {})


def url_row(number: int, url: str, columns: Mapping[str, Any]) -> UrlRow | Entry:
    """A list's row as a URL to fetch, with its `label` and `caption` columns if any, or as a
    rejected entry when the URL is not an http(s) URL."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as error:
        return _bad(number, url, f"not a valid URL ({error})")
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        return _bad(number, url, "only http:// and https:// URLs with a host are downloaded")
    label = SAFE_NAME.sub("_", str(columns.get("label") or "").strip()).strip("._")[:64]
    return UrlRow(number, url, label, str(columns.get("caption") or "")[:MAX_CAPTION])


def _bad(number: int, url: str, why: str) -> Entry:
    digest = hashlib.sha256(f"{number}:{url}".encode()).hexdigest()[:10]
    return Entry(
        f"invalid-url-{number}-{digest}",
        None,
        reason="bad_url",
        message=f"line {number}: {url!r}: {why}",
        origin=url,
    )


def iter_url_entries(
    rows: Iterable[UrlRow | Entry], settings: DownloadSettings, spool_dir: Path
) -> Iterator[Entry]:
    """Download the rows' URLs in a pool, at most 2 x workers at a time, as entries.

    Each downloaded entry reads its spool file, which is deleted once the caller asks for the
    next entry: read each entry before asking for the next.
    """
    opener = _opener(settings.allow_private_hosts)

    def fetch(row: UrlRow | Entry) -> tuple[Entry, Path | None]:
        if isinstance(row, Entry):
            return row, None
        return download(row, settings, spool_dir, opener)

    for entry, spool in map_in_pool(fetch, rows, settings.workers):
        yield entry
        if spool is not None:
            spool.unlink(missing_ok=True)


class BlockedHostError(urllib.error.URLError):
    """The URL, or a redirect, points at an address a request may not reach."""


def _refuse_private(host: str, addresses: Iterable[str]) -> None:
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global:
            raise BlockedHostError(
                f"host {host!r} resolves to the non-public address {ip} "
                "(only the deployment setting DATASET_ASSETS_ALLOW_PRIVATE_HOSTS allows it)"
            )


def _check_host(url: str, allow_private: bool) -> None:
    """Refuse a URL whose host resolves to a non-public address (a redirect's, or one reached
    through a proxy); direct connections are checked again by `connect_public`."""
    host = urlsplit(url).hostname or ""
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as error:
        raise urllib.error.URLError(f"cannot resolve host {host!r} ({error.strerror})") from None
    _refuse_private(host, {info[4][0] for info in infos})


def connect_public(
    host: str, port: int, timeout: float, source_address: tuple[str, int] | None = None
) -> socket.socket:
    """A socket to `host`, connected only after every address it resolves to proved public.

    The check runs on the very addresses the socket connects to, so a name that resolved to a
    public address for `_check_host` and to a private one a moment later (DNS rebinding) is
    still refused.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    _refuse_private(host, {info[4][0] for info in infos})
    error: OSError = OSError(f"no address for {host!r}")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(address)
            return sock
        except OSError as failed:
            sock.close()
            error = failed
    raise error


class Deadline:
    """One download's deadline, over connecting, the headers and the body together.

    Every socket the download opens is shut down when the deadline passes, so a server that
    sends its headers or its body a byte at a time cannot hold a worker past it (no single
    read ever times out on such a server).
    """

    _current = threading.local()

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._timers: list[threading.Timer] = []

    @classmethod
    def current(cls) -> "Deadline | None":
        return getattr(cls._current, "deadline", None)

    def __enter__(self) -> "Deadline":
        Deadline._current.deadline = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        Deadline._current.deadline = None
        for timer in self._timers:
            timer.cancel()

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        timer = threading.Timer(self.remaining(), self._expire, (sock,))
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def _expire(self, sock: socket.socket) -> None:
        self.expired = True
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def error(self) -> TimeoutError:
        return TimeoutError(f"download took longer than {self.seconds:g} s")


class _GuardedHTTPConnection(http.client.HTTPConnection):
    """Connects only to public addresses unless `allow_private`, within the download's deadline."""

    def __init__(self, *args: Any, allow_private: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allow_private = allow_private

    def connect(self) -> None:
        deadline = Deadline.current()
        timeout = self.timeout
        if deadline is not None:
            timeout = min(timeout, deadline.remaining()) if timeout else deadline.remaining()
        if self.allow_private:
            self.sock = socket.create_connection(
                (self.host, self.port), timeout, self.source_address
            )
        else:
            self.sock = connect_public(self.host, self.port, timeout, self.source_address)
        self.sock.settimeout(self.timeout)
        if deadline is not None:
            deadline.watch(self.sock)


class _GuardedHTTPSConnection(http.client.HTTPSConnection, _GuardedHTTPConnection):
    """TLS over `_GuardedHTTPConnection.connect` (`HTTPSConnection.connect` calls it first)."""


def _connection_class(
    request: urllib.request.Request, guarded: type[_GuardedHTTPConnection], allow_private: bool
) -> Callable[..., http.client.HTTPConnection]:
    """The guarded connection; through a proxy, which resolves the name itself, only the name
    can be checked, so it is checked here and the proxy's own address is not."""
    direct = request.host == urlsplit(request.full_url).netloc
    if not direct and not allow_private:
        _check_host(request.full_url, allow_private=False)
    return partial(guarded, allow_private=allow_private or not direct)


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, allow_private: bool) -> None:
        super().__init__()
        self.allow_private = allow_private

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_connection_class(req, _GuardedHTTPConnection, self.allow_private), req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, allow_private: bool) -> None:
        super().__init__()
        self.allow_private = allow_private

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = _connection_class(req, _GuardedHTTPSConnection, self.allow_private)
        return self.do_open(connection, req, context=self._context)


class CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects only over http(s) and to hosts the request may reach."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme.lower() not in {"http", "https"}:
            raise BlockedHostError(f"redirect to {newurl!r}: only http and https are followed")
        _check_host(newurl, self.allow_private)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(allow_private: bool) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        CheckedRedirects(allow_private),
        _GuardedHTTPHandler(allow_private),
        _GuardedHTTPSHandler(allow_private),
    )


def download(
    row: UrlRow, settings: DownloadSettings, spool_dir: Path, opener: urllib.request.OpenerDirector
) -> tuple[Entry, Path | None]:
    """Fetch one URL into a spool file; the entry, or a rejected entry naming the cause.

    Retries share the download's one deadline (`deadline_s`), which covers connecting, the
    headers and the body.
    """
    headers = {"User-Agent": _user_agent(), "Accept": "image/*,*/*;q=0.5"}
    tries = 0
    with Deadline(settings.deadline_s) as deadline:
        while tries <= settings.retries:
            retry_in = min(8.0, 0.25 * 2**tries)
            tries += 1
            spool = spool_dir / f"{uuid.uuid4().hex}.download"
            try:
                request = urllib.request.Request(row.url, headers=headers)
                with opener.open(request, timeout=settings.timeout_s) as response:
                    entry, saved = _save(row, response, spool, settings)
                if not deadline.expired:
                    return entry, saved
                raise deadline.error()
            except urllib.error.HTTPError as error:
                cause = f"HTTP {error.code} {error.reason}"
                if error.code not in RETRY_STATUSES:
                    return _rejected(row, "download_failed", cause), None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
                refusal = _refusal(error)
                if refusal is not None:
                    return _rejected(row, "blocked_host", refusal), None
                reason = deadline.error() if deadline.expired else getattr(error, "reason", error)
                cause = (
                    f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
                )
            spool.unlink(missing_ok=True)
            if deadline.expired or tries > settings.retries:
                break
            time.sleep(min(retry_in, deadline.remaining()))
    return _rejected(row, "download_failed", f"{cause} (after {tries} attempts)"), None


def _refusal(error: BaseException) -> str | None:
    """Why a host was refused: raised before connecting, or wrapped by urllib while connecting."""
    for candidate in (error, getattr(error, "reason", None)):
        if isinstance(candidate, BlockedHostError):
            return str(candidate.reason)
    return None


def _save(
    row: UrlRow, response: http.client.HTTPResponse, spool: Path, settings: DownloadSettings
) -> tuple[Entry, Path | None]:
    """Stream the body to `spool` within the size limit (the download's `Deadline` cuts off a
    host that sends a byte at a time)."""
    max_bytes = settings.max_bytes
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        return _too_large(row, int(length), max_bytes), None
    size = 0
    with open(spool, "wb") as out:
        while chunk := response.read1(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                out.close()
                spool.unlink(missing_ok=True)
                return _too_large(row, size, max_bytes), None
            out.write(chunk)
    content_type = response.headers.get_content_type()
    suffix = PurePosixPath(row.path).suffix
    if content_type.startswith("image/"):
        guessed = mimetypes.guess_extension(content_type) or suffix
        suffix = {".jpe": ".jpg", ".jpeg": ".jpg"}.get(guessed, guessed)
    entry = Entry(
        row.path_with(suffix),
        size,
        open=partial(open, spool, "rb"),
        origin=row.url,
        caption=row.caption or None,
    )
    return entry, spool


def _rejected(row: UrlRow, reason: str, cause: str) -> Entry:
    return Entry(
        row.path,
        None,
        reason=reason,
        message=f"line {row.line}: {row.url}: {cause}",
        origin=row.url,
    )


def _too_large(row: UrlRow, size: int, limit: int) -> Entry:
    return _rejected(row, "file_too_large", f"{size} bytes or more exceeds the limit of {limit}")


def open_url_list(path: Path) -> Iterator[str]:
    """The lines of a local URL list, ends kept."""
    try:
        handle = open(path, encoding="utf-8", errors="replace", newline="")  # noqa: SIM115
    except OSError as error:
        raise SourceError(f"URL list {str(path)!r}: {error.strerror}") from None
    with handle:
        yield from handle


def checked_url_list(lines: Iterator[str], name: str) -> Iterator[str]:
    """The lines of a URL list, local or on S3, failing on the first when a CSV/TSV list has no
    `url` column, so a wrong file stops the run before any download."""
    first = next(lines, "")
    _check_header(first, name)
    if first:
        yield first
    yield from lines
