"""Moderated Q&A of a live session: questions are held for review, staff approve, reject, merge,
answer and pin them; viewers upvote approved ones.

Every question records the product pinned when it was asked (`commerce.catalog.current_pin`), so
its answer can later be shown beside that product and its replay chapter.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce import catalog
from commerce.base import Base, as_utc, utcnow
from commerce.errors import Conflict, InvalidState, NotFound


class QuestionStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    MERGED = "merged"


class Question(Base):
    __tablename__ = "questions"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("live_sessions.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    user_name: Mapped[str] = mapped_column(String(64), default="")
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=QuestionStatus.PENDING.value, index=True)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"), nullable=True)
    pin_id: Mapped[int | None] = mapped_column(ForeignKey("product_pins.id"), nullable=True)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("questions.id"), nullable=True)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    answered_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    pinned: Mapped[bool] = mapped_column(default=False)
    votes: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "session_id": self.session_id,
            "user": {"id": self.user_id, "name": self.user_name},
            "text": self.text, "status": self.status, "product_id": self.product_id,
            "pin_id": self.pin_id, "merged_into_id": self.merged_into_id, "answer": self.answer,
            "answered_at": as_utc(self.answered_at).isoformat() if self.answered_at else None,
            "pinned": self.pinned, "votes": self.votes,
            "created_at": as_utc(self.created_at).isoformat(),
        }


class QuestionVote(Base):
    __tablename__ = "question_votes"
    __table_args__ = (UniqueConstraint("question_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("questions.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


async def ask(db: AsyncSession, session_id: int, user_id: int, user_name: str, text: str) -> Question:
    """A viewer asks; the question waits for review, tied to the product pinned right now."""
    pin = await catalog.current_pin(db, session_id)
    question = Question(
        session_id=session_id, user_id=user_id, user_name=user_name, text=text,
        product_id=pin.product_id if pin else None, pin_id=pin.id if pin else None,
    )
    db.add(question)
    await db.flush()
    return question


async def get(db: AsyncSession, session_id: int, question_id: int) -> Question:
    question = await db.get(Question, question_id)
    if question is None or question.session_id != session_id:
        raise NotFound("问题不存在 / No such question")
    return question


async def review(db: AsyncSession, session_id: int, question_id: int, approve: bool,
                 reviewer: int) -> Question:
    question = await get(db, session_id, question_id)
    if question.status == QuestionStatus.MERGED:
        raise InvalidState("问题已合并 / The question was merged")
    question.status = (QuestionStatus.APPROVED if approve else QuestionStatus.REJECTED).value
    question.reviewed_by = reviewer
    if not approve:
        question.pinned = False
    await db.flush()
    return question


async def answer(db: AsyncSession, session_id: int, question_id: int, text: str,
                 by: int) -> Question:
    """Answering a pending question approves it: staff answering it means it is fit to show."""
    question = await get(db, session_id, question_id)
    if question.status in (QuestionStatus.REJECTED, QuestionStatus.MERGED):
        raise InvalidState("该问题不能回答 / This question cannot be answered")
    question.status = QuestionStatus.APPROVED.value
    question.answer = text
    question.answered_by = by
    question.answered_at = utcnow()
    await db.flush()
    return question


async def merge(db: AsyncSession, session_id: int, question_id: int, into_id: int,
                by: int) -> tuple[Question, Question]:
    """Fold a duplicate into another question; its voters' votes move with it (once per user)."""
    if question_id == into_id:
        raise InvalidState("不能合并到自身 / Cannot merge a question into itself")
    source = await get(db, session_id, question_id)
    target = await get(db, session_id, into_id)
    if target.status in (QuestionStatus.MERGED, QuestionStatus.REJECTED):
        raise InvalidState("目标问题不可用 / The target question is not available")
    voters = set((await db.execute(
        select(QuestionVote.user_id).where(QuestionVote.question_id == source.id))).scalars())
    voters.add(source.user_id)
    already = set((await db.execute(
        select(QuestionVote.user_id).where(QuestionVote.question_id == target.id))).scalars())
    for user_id in voters - already - {target.user_id}:
        db.add(QuestionVote(question_id=target.id, user_id=user_id))
        target.votes += 1
    source.status = QuestionStatus.MERGED.value
    source.merged_into_id = target.id
    source.pinned = False
    source.reviewed_by = by
    if target.status == QuestionStatus.PENDING:
        target.status = QuestionStatus.APPROVED.value
        target.reviewed_by = by
    await db.flush()
    return source, target


async def pin(db: AsyncSession, session_id: int, question_id: int | None) -> Question | None:
    """Pin one approved question (unpinning the others); None unpins all."""
    await db.execute(update(Question).where(Question.session_id == session_id,
                                            Question.pinned.is_(True)).values(pinned=False))
    if question_id is None:
        await db.flush()
        return None
    question = await get(db, session_id, question_id)
    if question.status != QuestionStatus.APPROVED:
        raise InvalidState("只能置顶已通过的问题 / Only approved questions can be pinned")
    question.pinned = True
    await db.flush()
    return question


async def upvote(db: AsyncSession, session_id: int, question_id: int, user_id: int) -> Question:
    """One vote per user, on approved questions only."""
    question = await get(db, session_id, question_id)
    if question.status != QuestionStatus.APPROVED:
        raise InvalidState("只能为已通过的问题点赞 / Only approved questions can be upvoted")
    try:
        async with db.begin_nested():
            db.add(QuestionVote(question_id=question.id, user_id=user_id))
            await db.flush()
    except IntegrityError:
        raise Conflict("已经点过了 / You already upvoted this", reason="already_voted") from None
    await db.execute(update(Question).where(Question.id == question.id)
                     .values(votes=Question.votes + 1))
    await db.refresh(question)
    return question


async def for_session(db: AsyncSession, session_id: int, public: bool,
                      limit: int = 200) -> list[Question]:
    """Approved questions (most voted first) for anyone; everything, newest first, for staff."""
    query = select(Question).where(Question.session_id == session_id)
    if public:
        query = query.where(Question.status == QuestionStatus.APPROVED).order_by(
            Question.pinned.desc(), Question.votes.desc(), Question.id)
    else:
        query = query.order_by(Question.id.desc())
    return list((await db.execute(query.limit(limit))).scalars())
