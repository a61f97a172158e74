"""QC reports (质检报告) per batch: typed measurements, who tested and when, photos or a PDF.

A report is immutable once filed: creating it appends a "tested" trace event whose data carries a
commitment (hashes of the report row, each measurement row and each attached file's record), so an
edited QC row is found by verify-trace and named. Corrections are filed as a new report.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Principal
from commerce.base import Base, utcnow
from commerce.catalog import Batch
from commerce.errors import InvalidInput
from commerce.locks import lock_row
from trust.trace import EventKind, append_event, ensure_batch_staff, events_for, head_for, to_utc
from trust.trace_signing import TraceSigner, iso, sha256_hex
from trust.uploads import Upload, claim_uploads

MAX_MEASUREMENTS = 30
MAX_ATTACHMENTS = 10
MAX_REPORTS_PER_BATCH = 100
# Enzyme-inhibition quick test (GB/T 5009.199): inhibition ≥ 50 % is a positive (fail) result.
PESTICIDE_INHIBITION_LIMIT = 50.0


class MeasurementKind(enum.StrEnum):
    PESTICIDE_QUICK_TEST = "pesticide_quick_test"
    BRIX = "brix"
    ACIDITY = "acidity"
    PROTEIN = "protein"
    FAT = "fat"
    CUSTOM = "custom"


DEFAULTS: dict[MeasurementKind, tuple[str, str, float, float]] = {
    # kind: (display name, default unit, min, max)
    MeasurementKind.PESTICIDE_QUICK_TEST: ("农残快检(抑制率) / Pesticide quick test", "%", 0, 100),
    MeasurementKind.BRIX: ("糖度 / Brix", "°Bx", 0, 100),
    MeasurementKind.ACIDITY: ("酸度 / Acidity", "%", 0, 100),
    MeasurementKind.PROTEIN: ("蛋白质 / Protein", "g/100g", 0, 100),
    MeasurementKind.FAT: ("脂肪 / Fat", "g/100g", 0, 100),
    MeasurementKind.CUSTOM: ("", "", -1e9, 1e9),
}


class QcReport(Base):
    __tablename__ = "qc_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    tester: Mapped[str] = mapped_column(String(80))
    lab: Mapped[str] = mapped_column(String(120), default="")
    tested_at: Mapped[datetime] = mapped_column()
    conclusion: Mapped[str] = mapped_column(String(8))  # "pass" | "fail"
    summary: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def content(self) -> dict[str, Any]:
        return {
            "id": self.id, "batch_id": self.batch_id, "tester": self.tester, "lab": self.lab,
            "tested_at": iso(self.tested_at), "conclusion": self.conclusion,
            "summary": self.summary, "attachments": list(self.attachments or []),
            "created_by": self.created_by,
        }


class QcMeasurement(Base):
    __tablename__ = "qc_measurements"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("qc_reports.id"), index=True)
    position: Mapped[int] = mapped_column()
    kind: Mapped[str] = mapped_column(String(24))
    name: Mapped[str] = mapped_column(String(80))
    value: Mapped[float | None] = mapped_column(nullable=True)
    unit: Mapped[str] = mapped_column(String(16), default="")
    passed: Mapped[bool | None] = mapped_column(nullable=True)

    def content(self) -> dict[str, Any]:
        return {
            "id": self.id, "report_id": self.report_id, "position": self.position,
            "kind": self.kind, "name": self.name, "value": self.value, "unit": self.unit,
            "passed": self.passed,
        }

    def public_dict(self) -> dict[str, Any]:
        data = self.content()
        del data["report_id"]
        # What "passed" was decided against, so a reader can check it (not part of the hash:
        # the limit is the standard's, not something the tester wrote).
        data["threshold"] = ({"below": PESTICIDE_INHIBITION_LIMIT, "unit": "%"}
                             if self.kind == MeasurementKind.PESTICIDE_QUICK_TEST else None)
        return data


@dataclass(frozen=True)
class MeasurementIn:
    kind: MeasurementKind
    value: float | None = None
    passed: bool | None = None
    name: str = ""
    unit: str = ""


def build_measurement(index: int, item: MeasurementIn) -> QcMeasurement:
    """Fill default names/units and check ranges; the pesticide test decides pass from inhibition."""
    display, unit, lo, hi = DEFAULTS[item.kind]
    name = item.name.strip() or display
    if item.kind is MeasurementKind.CUSTOM and not item.name.strip():
        raise InvalidInput("自定义项目需要名称 / A custom measurement needs a name",
                           field=f"measurements.{index}.name")
    if item.value is not None and not lo <= item.value <= hi:
        raise InvalidInput(f"数值超出范围 / Value out of range [{lo}, {hi}]",
                           field=f"measurements.{index}.value")
    passed = item.passed
    if item.kind is MeasurementKind.PESTICIDE_QUICK_TEST:
        if item.value is None and passed is None:
            raise InvalidInput("农残快检需要抑制率或结论 / Pesticide test needs inhibition % or a result",
                               field=f"measurements.{index}")
        if passed is None and item.value is not None:
            passed = item.value < PESTICIDE_INHIBITION_LIMIT
    elif item.value is None:
        raise InvalidInput("需要数值 / A value is required", field=f"measurements.{index}.value")
    return QcMeasurement(position=index, kind=item.kind.value, name=name, value=item.value,
                         unit=(item.unit.strip() or unit), passed=passed)


async def create_report(
    db: AsyncSession, signer: TraceSigner, batch: Batch, actor: Principal, tester: str,
    tested_at: datetime, measurements: list[MeasurementIn], attachment_ids: list[int],
    lab: str = "", summary: str = "", conclusion: str | None = None,
) -> QcReport:
    """File a report and commit it into the batch's trace chain with a "tested" event."""
    ensure_batch_staff(batch, actor)
    if not measurements or len(measurements) > MAX_MEASUREMENTS:
        raise InvalidInput(f"需要 1–{MAX_MEASUREMENTS} 个检测项 / 1–{MAX_MEASUREMENTS} measurements",
                           field="measurements")
    if len(attachment_ids) > MAX_ATTACHMENTS:
        raise InvalidInput(f"最多 {MAX_ATTACHMENTS} 个附件 / At most {MAX_ATTACHMENTS} attachments",
                           field="attachments")
    await lock_row(db, Batch, batch.id)  # the count below holds for reports filed at once
    if await report_count(db, batch.id) >= MAX_REPORTS_PER_BATCH:
        raise InvalidInput(f"每个批次最多 {MAX_REPORTS_PER_BATCH} 份报告 / At most "
                           f"{MAX_REPORTS_PER_BATCH} reports per batch", limit=MAX_REPORTS_PER_BATCH)
    rows = [build_measurement(i, m) for i, m in enumerate(measurements)]
    if conclusion is None:
        conclusion = "fail" if any(row.passed is False for row in rows) else "pass"
    uploads = await claim_uploads(db, actor, attachment_ids, ("qc", "batch"), make_public=True)
    report = QcReport(
        batch_id=batch.id, tester=tester, lab=lab, tested_at=to_utc(tested_at), conclusion=conclusion,
        summary=summary, attachments=[u.id for u in uploads], created_by=actor.user_id,
    )
    db.add(report)
    await db.flush()
    for row in rows:
        row.report_id = report.id
        db.add(row)
    await db.flush()
    commitment = commit_report(report, rows, uploads)
    await append_event(
        db, signer, batch, actor, EventKind.TESTED, occurred_at=report.tested_at, location=lab,
        note=summary[:200],
        data={"qc_report_id": report.id, "conclusion": conclusion,
              "qc_hash": sha256_hex(commitment), "commitment": commitment},
    )
    return report


def commit_report(
    report: QcReport, measurements: list[QcMeasurement], uploads: list[Upload]
) -> dict[str, Any]:
    """What a "tested" event commits to: one hash per row, so verify can name the edited one."""
    return {
        "qc_report_id": report.id,
        "report": sha256_hex(report.content()),
        "measurements": {str(m.id): sha256_hex(m.content()) for m in measurements},
        "attachments": {str(u.id): sha256_hex(upload_content(u)) for u in uploads},
    }


def upload_content(upload: Upload) -> dict[str, Any]:
    return {"id": upload.id, "sha256": upload.sha256, "content_type": upload.content_type,
            "size": upload.size}


async def reports_for(db: AsyncSession, batch_id: int) -> list[QcReport]:
    rows = await db.execute(
        select(QcReport).where(QcReport.batch_id == batch_id).order_by(QcReport.tested_at)
    )
    return list(rows.scalars())


async def measurements_for(db: AsyncSession, report_id: int) -> list[QcMeasurement]:
    rows = await db.execute(
        select(QcMeasurement).where(QcMeasurement.report_id == report_id)
        .order_by(QcMeasurement.position, QcMeasurement.id)
    )
    return list(rows.scalars())


async def uploads_by_id(db: AsyncSession, ids: list[int]) -> list[Upload]:
    if not ids:
        return []
    rows = await db.execute(select(Upload).where(Upload.id.in_(ids)))
    found = {u.id: u for u in rows.scalars()}
    return [found[i] for i in ids if i in found]


async def report_dict(db: AsyncSession, report: QcReport) -> dict[str, Any]:
    measurements = await measurements_for(db, report.id)
    uploads = await uploads_by_id(db, list(report.attachments or []))
    return {
        "id": report.id, "batch_id": report.batch_id, "tester": report.tester, "lab": report.lab,
        "tested_at": iso(report.tested_at), "conclusion": report.conclusion,
        "summary": report.summary, "measurements": [m.public_dict() for m in measurements],
        "attachments": [u.public_dict() for u in uploads],
    }


async def batch_summary(db: AsyncSession, batch_id: int) -> dict[str, Any]:
    """Batch origin + newest QC report in a few fields: what travels with a product pin.

    Meant for ProductPin.snapshot["evidence"] (realtime's pin code) and order/claim evidence.
    Small on purpose (≤ ~1 KB): it is broadcast to every viewer of the room.
    """
    batch = await db.get(Batch, batch_id)
    if batch is None:
        return {}
    reports = await reports_for(db, batch_id)
    latest = reports[-1] if reports else None
    qc: dict[str, Any] | None = None
    if latest is not None:
        measurements = await measurements_for(db, latest.id)
        qc = {
            "report_id": latest.id, "tested_at": iso(latest.tested_at), "tester": latest.tester,
            "lab": latest.lab, "conclusion": latest.conclusion,
            "measurements": [
                {"kind": m.kind, "name": m.name, "value": m.value, "unit": m.unit,
                 "passed": m.passed} for m in measurements[:6]
            ],
            "attachments": len(latest.attachments or []),
        }
    head = await head_for(db, batch_id)
    events = await events_for(db, batch_id)
    return {
        "batch": {"id": batch.id, "code": batch.code, "farm": batch.farm, "plot": batch.plot,
                  "harvested_at": iso(batch.harvested_at)},
        "qc": qc,
        "qc_reports": len(reports),
        "trace_events": len(events),
        "journey": [e.kind for e in events][-8:],
        "head_hash": head.hash if head is not None else None,
        "trace_url": f"/trace/{batch.code}",
    }


async def report_count(db: AsyncSession, batch_id: int) -> int:
    return int((await db.execute(
        select(func.count(QcReport.id)).where(QcReport.batch_id == batch_id)
    )).scalar_one())
