"""Two archive members with one name each become a record: the first is kept, the second is a
reject that says why."""

import io
import tarfile
import warnings
import zipfile

from dataset_assets.ingest.sources import iter_entries
from dataset_assets_tests.photos import photo


def _jpeg(name: str) -> bytes:
    buffer = io.BytesIO()
    photo(name).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_a_tar_with_a_repeated_member_name_keeps_both_records(pipeline, tmp_path):
    archive = tmp_path / "photos.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("coffee", "rocket"):
            data = _jpeg(name)
            info = tarfile.TarInfo("cups/photo.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert pipeline.run({"request_id": "names", "dataset_key": str(archive)}).success
    records = {doc["source"]: doc for doc in pipeline.metadata.iter_images("names")}
    assert set(records) == {"cups/photo.jpg", "cups/photo.jpg#2"}
    assert records["cups/photo.jpg"]["status"] == "processed"
    assert records["cups/photo.jpg#2"]["status"] == "rejected"
    assert records["cups/photo.jpg#2"]["reject_reason"] == "duplicate_name"
    assert "member 2" in records["cups/photo.jpg#2"]["reject_message"]
    kept = pipeline.blobs.get_bytes(records["cups/photo.jpg"]["blob_key"])
    assert kept == _jpeg("coffee")


def test_a_zip_with_a_repeated_member_name_lists_the_second_as_a_reject(tmp_path):
    archive = tmp_path / "photos.zip"
    with warnings.catch_warnings(), zipfile.ZipFile(archive, "w") as zipped:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it writes
        zipped.writestr("a.jpg", _jpeg("coffee"))
        zipped.writestr("a.jpg", _jpeg("rocket"))
        zipped.writestr("b.jpg", _jpeg("astronaut"))
    seen = []
    for entry in iter_entries(archive):  # each entry is read before the next, as ingest does
        content = entry.open().read() if entry.open else None
        seen.append((entry.path, entry.reason, content))
    assert seen == [
        ("a.jpg", None, _jpeg("coffee")),
        ("a.jpg#2", "duplicate_name", None),
        ("b.jpg", None, _jpeg("astronaut")),
    ]
