"""URL-list ingest: pooled, streamed downloads against a serial urllib loop, same server, same run.

A local HTTP server, in its own process, serves `--n` JPEGs with `--latency-ms` of added delay
per response, standing in for a remote image host. The baseline fetches the URLs one after
another with `urllib` and writes each to a file, as a throw-away script does. The pipeline's side
is the `raw_images` entry source: `iter_url_entries` with `--workers` downloads in flight, each
streamed to a spool file and read back, as the ingest stage reads it. Both sides fetch every URL
once and check the byte count.

    python bench/bench_download.py                       # 400 images, 40 ms latency, 16 workers
    python bench/bench_download.py --latency-ms 0        # no latency: loopback only
"""

import argparse
import io
import multiprocessing
import tempfile
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

from dataset_assets.ingest.urls import DownloadSettings, UrlRow, iter_url_entries


def serve(count: int, latency_s: float, port: "multiprocessing.Queue[int]") -> None:
    """The image host, in its own process so it does not share the client's GIL."""
    images = corpus(count)

    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # as production servers do: no 40 ms stalls on loopback

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = images[int(self.path.rsplit("/", 1)[-1].split(".")[0])]
            time.sleep(latency_s)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # the default listen backlog of 5 drops concurrent connects

    server = Server(("127.0.0.1", 0), Handler)
    port.put(server.server_address[1])
    server.serve_forever()


def corpus(count: int) -> list[bytes]:
    images = []
    for index in range(count):
        out = io.BytesIO()
        Image.new("RGB", (640, 480), (index % 256, 80, 160)).save(out, "JPEG", quality=90)
        images.append(out.getvalue())
    return images


def serial(urls: list[str], out: Path) -> int:
    total = 0
    for index, url in enumerate(urls):
        with urllib.request.urlopen(url, timeout=30) as response:
            data = response.read()
        (out / f"{index}.jpg").write_bytes(data)
        total += len(data)
    return total


def pooled(urls: list[str], spool: Path, workers: int) -> int:
    settings = DownloadSettings(workers=workers, timeout_s=30, allow_private_hosts=True)
    rows = [UrlRow(line, url) for line, url in enumerate(urls, start=1)]
    total = 0
    for entry in iter_url_entries(rows, settings, spool):
        assert entry.reason is None, entry.message
        with entry.open() as stream:
            total += len(stream.read())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()

    port: multiprocessing.Queue[int] = multiprocessing.Queue()
    host = multiprocessing.Process(
        target=serve, args=(args.n, args.latency_ms / 1000, port), daemon=True
    )
    host.start()
    base = f"http://127.0.0.1:{port.get(timeout=60)}"
    urls = [f"{base}/{index}.jpg" for index in range(args.n)]
    expected = sum(map(len, corpus(args.n)))

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        assert serial(urls, Path(folder)) == expected
        baseline = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        assert pooled(urls, Path(folder), args.workers) == expected
        ours = time.perf_counter() - start
    host.terminate()
    host.join()

    print(f"{args.n} images of 640x480, {args.latency_ms:g} ms latency per response")
    print(f"serial urllib loop     {baseline:7.2f} s  {args.n / baseline:8.1f} img/s")
    print(f"url-list ingest ({args.workers:>2}w)  {ours:7.2f} s  {args.n / ours:8.1f} img/s")
    print(f"ratio                  {baseline / ours:7.2f}x")


if __name__ == "__main__":
    main()
