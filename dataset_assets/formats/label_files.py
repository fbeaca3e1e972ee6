"""Label files: `labels.csv`, `labels.json` and one `labels/<image path>.txt` per image."""

import csv
import json
from pathlib import Path

from dataset_assets.formats.samples import Sample
from dataset_assets.storage.blobs import BlobStore


class LabelFilesWriter:
    """Writes the label of every image, keyed by the image's path from the dataset root.

    `labels.csv` has the columns `image,label,source` (the same `image,label` shape that
    `labels.source: manifest` reads), `labels.json` maps each path to its label, and
    `labels/hot/cats/x.txt` holds the label of `hot/cats/x.jpg`.
    """

    def __init__(self, blobs: BlobStore, prefix: str, scratch: Path, formats: list[str]):
        self.blobs, self.prefix, self.formats = blobs, prefix, formats
        self._json_path, self._csv_path = scratch / "labels.json", scratch / "labels.csv"
        self._json = open(self._json_path, "w")  # noqa: SIM115 - closed in close()
        self._csv_file = open(self._csv_path, "w", newline="")  # noqa: SIM115 - closed in close()
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(["image", "label", "source"])
        self._json.write("{")
        self._first = True
        self._first_txt = ""

    def add(self, sample: Sample) -> None:
        path, label = sample.record["file_name"], sample.record["label"]
        self._csv.writerow([path, label, sample.record["source"]])
        separator = "" if self._first else ","
        self._json.write(f"{separator}\n{json.dumps(path)}: {json.dumps(label)}")
        self._first = False
        if "txt" in self.formats:
            stem = path.rsplit(".", 1)[0]
            key = self.blobs.put_bytes(f"{self.prefix}/labels/{stem}.txt", f"{label}\n".encode())
            self._first_txt = self._first_txt or key

    def close(self) -> list[str]:
        """The keys written: the two tables, and the first per-image file standing for `labels/`."""
        self._json.write("\n}\n")
        self._json.close()
        self._csv_file.close()
        written = [self._first_txt] if self._first_txt else []
        if "json" in self.formats:
            written.append(self.blobs.put_file(f"{self.prefix}/labels.json", self._json_path))
        if "csv" in self.formats:
            written.append(self.blobs.put_file(f"{self.prefix}/labels.csv", self._csv_path))
        return written
