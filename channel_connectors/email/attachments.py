"""Attachments: checked by size, count and by their bytes (not the declared type), then
sealed at rest as recordings are (``recordings.sealed``, its own key purpose).

A refused file is named back to the citizen with the reason; a kept one is listed to
staff, and every listing and download is audited by the staff API.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from channel_connectors.email.parse import Attachment
from recordings.sealed import SealedReader, file_key, seal_bytes

KEY_PURPOSE = "email-attachments-v1"

# What a hotline takes as evidence: documents and pictures, told apart by their bytes.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"PK\x03\x04", "application/zip"),  # docx, xlsx, odt: office files are zips
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),  # doc, xls
)
_OFFICE = {
    "application/zip": {
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.oasis.opendocument.text",
    },
    "application/x-ole-storage": {"application/msword", "application/vnd.ms-excel"},
}
TEXT_TYPES = frozenset({"text/plain", "text/csv"})


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_count: int

    def describe(self) -> str:
        return (
            f"{self.max_bytes // (1024 * 1024)} MB"
            if self.max_bytes >= 1 << 20
            else (f"{self.max_bytes // 1024} KB")
        )


@dataclass(frozen=True)
class Checked:
    attachment: Attachment
    content_type: str | None  # what it is, when accepted
    refused: str | None  # too_large, type, too_many


def sniff(data: bytes, declared: str) -> str | None:
    """The file's real type when it is one a hotline takes, else None."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            if kind in _OFFICE:
                return declared if declared in _OFFICE[kind] else None
            return kind
    if declared in TEXT_TYPES and b"\x00" not in data:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return declared
    return None


def check(attachments: tuple[Attachment, ...], limits: Limits) -> list[Checked]:
    out = []
    for i, item in enumerate(attachments):
        if i >= limits.max_count:
            out.append(Checked(item, None, "too_many"))
        elif len(item.data) > limits.max_bytes:
            out.append(Checked(item, None, "too_large"))
        else:
            kind = sniff(item.data, item.content_type)
            out.append(Checked(item, kind, None if kind else "type"))
    return out


class AttachmentFiles:
    """Sealed files ``<dir>/<id>.sealed``; the id is the associated data."""

    def __init__(self, directory: Path, secret: bytes) -> None:
        self.directory = directory
        self._key = file_key(secret, KEY_PURPOSE)

    def store(self, attachment_id: str, data: bytes) -> str:
        """Seal ``data``; the sha256 of the plaintext."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        seal_bytes(data, self.path(attachment_id), self._key, aad=attachment_id.encode())
        return hashlib.sha256(data).hexdigest()

    def open(self, attachment_id: str) -> SealedReader:
        return SealedReader.open(self.path(attachment_id), self._key, aad=attachment_id.encode())

    def path(self, attachment_id: str) -> Path:
        return self.directory / f"{attachment_id}.sealed"
