"""Evidence uploads (QC report photos/PDFs, review and claim photos): checked, stored, served back.

The type is decided by the file's first bytes, never by its name or the client's Content-Type: an
HTML file named `photo.jpg` is refused. Files get random names (no user text reaches the disk
path) and a SHA-256 that QC commitments include, so a swapped file is detected by verify-trace.
Storage sits behind `Storage` so object storage can replace the local disk.

Who may read a file follows what it is attached to, never knowledge of its name alone: public
evidence (QC reports, batch photos, reviews) is `public`; a claim photo records its claim
(`claim_id`), and `trust.claims` lets whoever may view that claim read it; any other private
file is its uploader's (and admins').
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Principal, Role
from commerce.base import Base, as_utc, utcnow
from commerce.errors import DomainError, Forbidden, NotFound, Unauthorized

# Evidence a buyer or a farm may attach. SVG is deliberately absent (it can carry script).
ALLOWED_TYPES = ("image/jpeg", "image/png", "image/webp", "application/pdf")
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "application/pdf": "pdf",
              "video/mp4": "mp4"}
PURPOSES = ("qc", "review", "claim", "batch", "cover", "product", "ugc")
NAME_LENGTH = 64


class UploadTooLarge(DomainError):
    code = "upload_too_large"
    status = 413
    default_message = "文件太大 / File too large"


class UnsupportedUploadType(DomainError):
    code = "unsupported_upload_type"
    status = 415
    default_message = "只接受 JPEG、PNG、WebP 图片或 PDF / Only JPEG, PNG, WebP images or PDF are accepted"


class EmptyUpload(DomainError):
    code = "empty_upload"
    status = 400
    default_message = "文件为空 / The file is empty"


def sniff_type(head: bytes) -> str | None:
    """The media type the bytes really are (magic numbers), or None when not an allowed type."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    return None


class Storage(Protocol):
    """Where upload bytes live. Names are ours (random), so implementations may trust them."""

    async def put(self, name: str, data: bytes) -> None: ...

    async def get(self, name: str) -> bytes: ...

    def local_path(self, name: str) -> Path | None:
        """A file path when the storage is a local disk (served with sendfile), else None."""


class LocalDiskStorage:
    """Files under `root` (settings.data_dir/"uploads"), sharded by the first two name characters."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        if not _valid_name(name):
            raise NotFound()
        return self.root / name[:2] / name

    async def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a crash never leaves a half file under a committed name.
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)

    async def get(self, name: str) -> bytes:
        path = self._path(name)
        if not path.is_file():
            raise NotFound("文件不存在 / No such file")
        return path.read_bytes()

    def local_path(self, name: str) -> Path | None:
        path = self._path(name)
        return path if path.is_file() else None


def _valid_name(name: str) -> bool:
    stem, _, ext = name.partition(".")
    return (
        len(stem) == NAME_LENGTH and all(c in "0123456789abcdef" for c in stem)
        and ext in EXTENSIONS.values()
    )


class Upload(Base):
    """One stored file. `public` once attached to public evidence (a QC report, a review);
    `claim_id` once attached to an after-sales claim (private to the claim's parties)."""

    __tablename__ = "trust_uploads"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column()
    sha256: Mapped[str] = mapped_column(String(64))
    public: Mapped[bool] = mapped_column(default=False)
    claim_id: Mapped[int | None] = mapped_column(ForeignKey("claims.id"), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "url": f"/api/uploads/{self.name}", "content_type": self.content_type,
            "size": self.size, "sha256": self.sha256, "purpose": self.purpose,
            "created_at": as_utc(self.created_at).isoformat(),
        }


def check_upload(data: bytes, max_bytes: int) -> str:
    """Validate size and real type; returns the sniffed media type."""
    if len(data) > max_bytes:
        raise UploadTooLarge(max_bytes=max_bytes)
    if not data:
        raise EmptyUpload()
    kind = sniff_type(data[:16])
    if kind is None:
        raise UnsupportedUploadType(allowed=list(ALLOWED_TYPES))
    return kind


async def store_upload(
    db: AsyncSession, storage: Storage, owner: Principal, purpose: str, data: bytes, max_bytes: int
) -> Upload:
    """Check the bytes, write them under a random name and record them."""
    if purpose not in PURPOSES:
        raise UnsupportedUploadType("用途无效 / Unknown upload purpose", allowed_purposes=list(PURPOSES))
    kind = check_upload(data, max_bytes)
    name = f"{secrets.token_hex(NAME_LENGTH // 2)}.{EXTENSIONS[kind]}"
    await storage.put(name, data)
    upload = Upload(
        name=name, owner_id=owner.user_id, purpose=purpose, content_type=kind, size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    db.add(upload)
    await db.flush()
    return upload


def is_mp4(head: bytes) -> bool:
    """An ISO media file: its first box is `ftyp` (the brand is judged by the probe after)."""
    return len(head) >= 12 and head[4:8] == b"ftyp"


async def store_video(db: AsyncSession, storage: Storage, owner: Principal, data: bytes,
                      max_bytes: int) -> Upload:
    """A 晒单's short video: only an MP4 the caller has already probed (server/routes/ugc.py);
    stored like a photo, under a random name, private until its post is approved."""
    if len(data) > max_bytes:
        raise UploadTooLarge(max_bytes=max_bytes)
    if not data:
        raise EmptyUpload()
    if not is_mp4(data[:16]):
        raise UnsupportedUploadType("只接受 MP4 视频 / Only MP4 video is accepted", allowed=["video/mp4"])
    name = f"{secrets.token_hex(NAME_LENGTH // 2)}.mp4"
    await storage.put(name, data)
    upload = Upload(name=name, owner_id=owner.user_id, purpose="ugc", content_type="video/mp4",
                    size=len(data), sha256=hashlib.sha256(data).hexdigest())
    db.add(upload)
    await db.flush()
    return upload


async def find_upload(db: AsyncSession, name: str) -> Upload:
    if not _valid_name(name):
        raise NotFound("文件不存在 / No such file")
    found = (await db.execute(select(Upload).where(Upload.name == name))).scalar_one_or_none()
    if found is None:
        raise NotFound("文件不存在 / No such file")
    return found


def may_read(upload: Upload, who: Principal | None) -> bool:
    """Public evidence for anyone; a private file for its uploader and admins.

    Staff of a claim get its photos through `trust.claims.ensure_can_read_upload`; being
    staff somewhere is not enough (a host must not see the photos of another host's buyers)."""
    if upload.public:
        return True
    if who is None:
        return False
    # A 晒单 photo waits private until approved; the assistants who judge it must see it.
    return who.user_id == upload.owner_id or who.is_admin or (
        upload.purpose == "ugc" and who.role is Role.ASSISTANT)


def refuse_read(who: Principal | None) -> DomainError:
    """The refusal for a private file: sign in (401), or not yours (403)."""
    if who is None:
        return Unauthorized("请先登录 / Sign in to see this file", reason="token_missing")
    return Forbidden("无权查看该文件 / Not allowed to see this file")


async def claim_uploads(
    db: AsyncSession, owner: Principal, upload_ids: list[int], purposes: tuple[str, ...],
    make_public: bool,
) -> list[Upload]:
    """Attach the caller's own uploads to a record; someone else's upload id is refused."""
    found: list[Upload] = []
    for upload_id in dict.fromkeys(upload_ids):
        upload = await db.get(Upload, upload_id)
        if upload is None:
            raise NotFound("文件不存在 / No such upload", upload_id=upload_id)
        if upload.owner_id != owner.user_id and not owner.is_admin:
            raise Forbidden("不能使用别人的文件 / Not your upload", upload_id=upload_id)
        if upload.purpose not in purposes:
            raise UnsupportedUploadType("文件用途不符 / Upload purpose does not fit",
                                        upload_id=upload_id)
        if make_public:
            upload.public = True
        found.append(upload)
    return found
