"""Re-check a batch's trace from the stored rows and name the first thing that does not add up.

Order of checks (the first failure is reported, with what and why):
1. each event in seq order: seq has no gap, its hash equals the hash of its content, its `prev`
   equals the previous event's hash (the genesis hash of the batch origin for seq 1);
2. each "tested" event: the QC report it commits to still hashes the same, row by row
   (report, measurements, attachment records, and the attached file's bytes when storage has it);
3. every QC report of the batch is committed by some "tested" event (no forged extra reports);
4. the signed head matches the last event and its signature verifies.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from commerce.catalog import Batch
from trust.qc import QcReport, commit_report, measurements_for, reports_for, uploads_by_id
from trust.trace import EventKind, events_for, genesis_hash, head_for
from trust.trace_signing import TraceSigner, sha256_hex
from trust.uploads import Storage


@dataclass
class Problem:
    """What failed: `record` is e.g. "trace_event", "qc_report", "qc_measurement", "upload"."""

    record: str
    id: int | None
    reason: str
    seq: int | None = None
    message: str = ""


@dataclass
class VerifyResult:
    batch_code: str
    ok: bool
    events: int
    head_hash: str | None
    key_id: str | None
    problem: Problem | None = None
    checked_qc_reports: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["first_problem"] = data.pop("problem")
        return data


async def verify_batch(
    db: AsyncSession, signer: TraceSigner, batch: Batch, storage: Storage | None = None
) -> VerifyResult:
    events = await events_for(db, batch.id)
    head = await head_for(db, batch.id)
    result = VerifyResult(batch.code, True, len(events), head.hash if head else None,
                          head.key_id if head else None)

    def fail(problem: Problem) -> VerifyResult:
        result.ok = False
        result.problem = problem
        return result

    prev = genesis_hash(batch)
    committed: set[int] = set()
    for expected_seq, event in enumerate(events, start=1):
        if event.seq != expected_seq:
            return fail(Problem("trace_event", event.id, "sequence_gap", event.seq,
                                f"expected seq {expected_seq}, found {event.seq}"))
        if sha256_hex(event.content()) != event.hash:
            return fail(Problem("trace_event", event.id, "hash_mismatch", event.seq,
                                "event content does not match its hash (edited)"))
        if event.prev_hash != prev:
            reason = "origin_changed" if expected_seq == 1 else "chain_broken"
            record = "batch" if expected_seq == 1 else "trace_event"
            rid = batch.id if expected_seq == 1 else event.id
            return fail(Problem(record, rid, reason, event.seq,
                                "batch origin (code/farm/plot/harvest time) was edited"
                                if expected_seq == 1 else "prev hash does not link to the event before"))
        prev = event.hash
        if event.kind == EventKind.TESTED.value:
            data = event.data or {}
            report_id = data.get("qc_report_id")
            if isinstance(report_id, int):
                committed.add(report_id)
                problem = await _check_report(db, storage, report_id, data, event.seq)
                if problem is not None:
                    return fail(problem)
                result.checked_qc_reports.append(report_id)

    for report in await reports_for(db, batch.id):
        if report.id not in committed:
            return fail(Problem("qc_report", report.id, "not_in_chain", None,
                                "QC report is not committed by any tested event (inserted later)"))

    if not events:
        if head is not None:
            return fail(Problem("trace_head", batch.id, "events_missing", head.seq,
                                "signed head exists but the events are gone"))
        return result
    last = events[-1]
    if head is None:
        return fail(Problem("trace_head", batch.id, "head_missing", last.seq, "no signed head"))
    if head.seq != last.seq or head.hash != last.hash:
        return fail(Problem("trace_head", batch.id, "head_mismatch", head.seq,
                            f"signed head is seq {head.seq}, last event is seq {last.seq}"))
    if head.key_id != signer.key_id:
        return fail(Problem("trace_head", batch.id, "unknown_key", head.seq,
                            f"head signed by key {head.key_id}, server key is {signer.key_id}"))
    if not signer.verify(batch.code, head.seq, head.hash, head.signature):
        return fail(Problem("trace_head", batch.id, "bad_signature", head.seq,
                            "head signature does not verify"))
    return result


async def _check_report(
    db: AsyncSession, storage: Storage | None, report_id: int, data: dict[str, Any], seq: int
) -> Problem | None:
    commitment = data.get("commitment")
    if not isinstance(commitment, dict) or sha256_hex(commitment) != data.get("qc_hash"):
        return Problem("trace_event", None, "commitment_mismatch", seq,
                       "tested event's QC commitment is inconsistent")
    report = await db.get(QcReport, report_id)
    if report is None:
        return Problem("qc_report", report_id, "missing", seq, "QC report row was deleted")
    measurements = await measurements_for(db, report.id)
    uploads = await uploads_by_id(db, list(report.attachments or []))
    now = commit_report(report, measurements, uploads)
    if now["report"] != commitment.get("report"):
        return Problem("qc_report", report.id, "hash_mismatch", seq, "QC report row was edited")
    stored: dict[str, str] = commitment.get("measurements") or {}
    for mid, digest in now["measurements"].items():
        if mid not in stored:
            return Problem("qc_measurement", int(mid), "not_in_chain", seq,
                           "measurement added after the report was filed")
        if stored[mid] != digest:
            return Problem("qc_measurement", int(mid), "hash_mismatch", seq,
                           "QC measurement row was edited")
    for mid in stored:
        if mid not in now["measurements"]:
            return Problem("qc_measurement", int(mid), "missing", seq, "measurement row was deleted")
    stored_files: dict[str, str] = commitment.get("attachments") or {}
    if set(stored_files) != set(now["attachments"]):
        missing = sorted(set(stored_files) ^ set(now["attachments"]))
        return Problem("upload", int(missing[0]), "missing", seq, "attachment list changed")
    for upload in uploads:
        if stored_files[str(upload.id)] != now["attachments"][str(upload.id)]:
            return Problem("upload", upload.id, "hash_mismatch", seq, "upload record was edited")
        if storage is not None and storage.local_path(upload.name) is not None:
            content = await storage.get(upload.name)
            if hashlib.sha256(content).hexdigest() != upload.sha256:
                return Problem("upload", upload.id, "file_changed", seq,
                               "stored file bytes differ from the committed hash")
    return None
