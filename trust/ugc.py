"""晒单 (UGC posts) and the campaigns that ask for them.

A post stands on a verified order of its batch: the author's own picked-up order, or the trial
sample she was sent. One post per order and per sample (UNIQUE). Text goes through the same
banned-word rule as live comments (`commerce.text.mask`, with the words the batch's host set
in his newest live room); photos are uploads checked by type and size (trust/uploads.py), made
public only when an assistant approves the post. Approval earns trust points once
(`ugc:<post>`, the campaign's reward when the post joins one) and keeps the author's 品鉴官
membership alive; hiding an approved post takes its points back.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import Principal, Role, User
from commerce.base import Base, as_utc, utcnow
from commerce.catalog import Product, get_batch
from commerce.errors import Conflict, Forbidden, InvalidInput, InvalidState, NotFound
from commerce.text import mask
from trust import points
from trust.evidence import fulfilled_order
from trust.programmes import Application, AppStatus, Programme, badges_for
from trust.reviews import mask_name
from trust.samples import Sample, own_sample
from trust.trace_signing import iso
from trust.uploads import Upload, claim_uploads

MAX_TEXT = 1000
MAX_PHOTOS = 9
MAX_HASHTAG = 30
DEFAULT_REWARD = 20
MAX_REWARD = 10_000
# A 晒单's short video: an MP4 of at most this many bytes and seconds (probed before storing).
MAX_VIDEO_BYTES = 20 * 1024 * 1024
MAX_VIDEO_S = 60
PURPOSES = ("ugc",)


class PostStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    HIDDEN = "hidden"


class Campaign(Base):
    __tablename__ = "ugc_campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(80))
    hashtag: Mapped[str] = mapped_column(String(MAX_HASHTAG + 2))
    reward_points: Mapped[int] = mapped_column(default=DEFAULT_REWARD)
    reward_text: Mapped[str] = mapped_column(String(200), default="")
    starts_at: Mapped[datetime] = mapped_column()
    ends_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def public_dict(self) -> dict[str, Any]:
        return {"id": self.id, "host_id": self.host_id, "title": self.title,
                "hashtag": self.hashtag, "reward_points": self.reward_points,
                "reward_text": self.reward_text, "starts_at": iso(self.starts_at),
                "ends_at": iso(self.ends_at)}

    def running(self, now: datetime) -> bool:
        return as_utc(self.starts_at) <= now < as_utc(self.ends_at)


class Post(Base):
    __tablename__ = "ugc_posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), nullable=True, unique=True)
    sample_id: Mapped[int | None] = mapped_column(ForeignKey("koc_samples.id"), nullable=True,
                                                  unique=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("ugc_campaigns.id"), nullable=True)
    text: Mapped[str] = mapped_column(Text, default="")
    filtered: Mapped[bool] = mapped_column(default=False)
    photos: Mapped[list[int]] = mapped_column(JSON, default=list)
    video_id: Mapped[int | None] = mapped_column(ForeignKey("trust_uploads.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=PostStatus.PENDING.value, index=True)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


async def create_campaign(db: AsyncSession, actor: Principal, title: str, hashtag: str,
                          starts_at: datetime, ends_at: datetime, reward_points: int,
                          reward_text: str) -> Campaign:
    if actor.role not in (Role.HOST, Role.ADMIN):
        raise Forbidden("只有主播可以发起活动 / Only hosts start campaigns")
    tag = hashtag.strip().strip("#")
    if not tag or len(tag) > MAX_HASHTAG or any(c in tag for c in "# \n"):
        raise InvalidInput(f"话题须为 1–{MAX_HASHTAG} 字,不含空格 / hashtag must be 1–{MAX_HASHTAG} "
                           "characters without spaces", field="hashtag")
    if as_utc(ends_at) <= as_utc(starts_at):
        raise InvalidInput("结束须晚于开始 / ends_at must be after starts_at", field="ends_at")
    if not 0 <= reward_points <= MAX_REWARD:
        raise InvalidInput(f"奖励积分须为 0–{MAX_REWARD} / reward_points 0–{MAX_REWARD}",
                           field="reward_points")
    campaign = Campaign(host_id=actor.user_id, title=title.strip(), hashtag=f"#{tag}#",
                        starts_at=starts_at, ends_at=ends_at, reward_points=reward_points,
                        reward_text=reward_text.strip())
    db.add(campaign)
    await db.flush()
    return campaign


async def campaigns(db: AsyncSession, host_id: int | None = None) -> list[Campaign]:
    query = select(Campaign).order_by(Campaign.id.desc()).limit(100)
    if host_id is not None:
        query = query.where(Campaign.host_id == host_id)
    return list((await db.execute(query)).scalars())


async def create_post(db: AsyncSession, actor: Principal, *, order_id: int | None,
                      sample_id: int | None, text: str, photo_ids: list[int],
                      campaign_id: int | None, banned_words: list[str],
                      video_id: int | None = None) -> Post:
    """A 晒单 of a verified order or sample of the author's own; waits for moderation."""
    if (order_id is None) == (sample_id is None):
        raise InvalidInput("须给出订单或试用装之一 / Give an order or a sample", field="order_id")
    clean = text.strip()
    if not clean or len(clean) > MAX_TEXT:
        raise InvalidInput(f"文字须为 1–{MAX_TEXT} 字 / text must be 1–{MAX_TEXT} characters",
                           field="text")
    if not 1 <= len(photo_ids) <= MAX_PHOTOS:
        raise InvalidInput(f"须有 1–{MAX_PHOTOS} 张照片 / 1–{MAX_PHOTOS} photos", field="photos")
    if order_id is not None:
        facts = await fulfilled_order(db, order_id, actor)
        if facts.evidence.batch_id is None:
            raise Conflict("该订单没有批次 / This order has no batch", reason="no_batch")
        batch_id, product_id = facts.evidence.batch_id, facts.evidence.product_id
        taken = select(Post.id).where(Post.order_id == order_id)
    else:
        assert sample_id is not None
        sample = await own_sample(db, actor, sample_id)
        batch_id, product_id = sample.batch_id, sample.product_id
        taken = select(Post.id).where(Post.sample_id == sample_id)
    if (await db.execute(taken)).first() is not None:
        raise Conflict("已为该订单晒过单 / Already posted for this order", reason="already_posted")
    batch = await get_batch(db, batch_id)
    if campaign_id is not None:
        campaign = await db.get(Campaign, campaign_id)
        if campaign is None:
            raise NotFound("活动不存在 / No such campaign", campaign_id=campaign_id)
        if campaign.host_id != batch.owner_id or not campaign.running(utcnow()):
            raise Conflict("活动不适用或不在进行中 / Campaign not open for this batch",
                           reason="campaign_closed")
        if campaign.hashtag not in clean:
            clean = f"{campaign.hashtag} {clean}"[:MAX_TEXT]
    masked, filtered = mask(clean, banned_words)
    photos = await claim_uploads(db, actor, photo_ids, PURPOSES, make_public=False)
    if any(p.content_type == "video/mp4" for p in photos):
        raise InvalidInput("视频请放在 video_id / A video goes in video_id", field="photos")
    video = None
    if video_id is not None:
        [video] = await claim_uploads(db, actor, [video_id], PURPOSES, make_public=False)
        if video.content_type != "video/mp4":
            raise InvalidInput("video_id 须为视频 / video_id must be a video", field="video_id")
    post = Post(user_id=actor.user_id, batch_id=batch_id, product_id=product_id,
                order_id=order_id, sample_id=sample_id, campaign_id=campaign_id, text=masked,
                filtered=filtered, photos=[p.id for p in photos],
                video_id=video.id if video is not None else None)
    db.add(post)
    try:
        await db.flush()
    except IntegrityError:
        raise Conflict("已为该订单晒过单 / Already posted for this order",
                       reason="already_posted") from None
    if sample_id is not None:
        await db.execute(update(Sample).where(Sample.id == sample_id).values(status="reviewed")
                         .execution_options(synchronize_session=False))
    return post


def _decider(actor: Principal) -> None:
    if actor.role not in (Role.ASSISTANT, Role.ADMIN):
        raise Forbidden("只有客服可以审核晒单 / Only assistants moderate posts")


async def decide(db: AsyncSession, actor: Principal, post_id: int, approve: bool) -> Post:
    """Approve (points once, membership kept alive) or hide (points taken back)."""
    _decider(actor)
    post = await db.get(Post, post_id)
    if post is None:
        raise NotFound("晒单不存在 / No such post", post_id=post_id)
    to = PostStatus.APPROVED if approve else PostStatus.HIDDEN
    now = utcnow()
    moved = await db.execute(
        update(Post).where(Post.id == post_id, Post.status != to.value)
        .values(status=to.value, decided_by=actor.user_id, decided_at=now)
        .execution_options(synchronize_session=False))
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidState(f"晒单已是 {to.value} / The post is already {to.value}", status=to.value)
    await db.refresh(post)
    files = [*(post.photos or []), *([post.video_id] if post.video_id else [])]
    photos = (await db.execute(select(Upload).where(Upload.id.in_(files)))).scalars()
    for photo in photos:
        photo.public = approve
    batch = await get_batch(db, post.batch_id)
    if approve:
        reward = DEFAULT_REWARD
        if post.campaign_id is not None:
            campaign = await db.get(Campaign, post.campaign_id)
            reward = campaign.reward_points if campaign is not None else DEFAULT_REWARD
        if reward > 0:
            await points.award(db, post.user_id, f"ugc:{post.id}", reward,
                               "晒单通过 / approved post", order_id=post.order_id)
        programme_ids = select(Programme.id).where(Programme.host_id == batch.owner_id)
        await db.execute(update(Application).where(
            Application.user_id == post.user_id, Application.status == AppStatus.SELECTED.value,
            Application.programme_id.in_(programme_ids)).values(last_post_at=now)
            .execution_options(synchronize_session=False))
    else:
        await points.reverse(db, f"ugc:{post.id}", "晒单被隐藏 / post hidden")
    return post


async def _render(db: AsyncSession, rows: list[tuple[Post, str]], host_id: int | None,
                  with_status: bool = False) -> list[dict[str, Any]]:
    photo_ids = [pid for post, _n in rows
                 for pid in (*(post.photos or []), *([post.video_id] if post.video_id else []))]
    names: dict[int, str] = {}
    if photo_ids:
        names = {u.id: u.name for u in (await db.execute(
            select(Upload).where(Upload.id.in_(photo_ids)))).scalars()}
    badges = await badges_for(db, [post.user_id for post, _n in rows], host_id)
    items = []
    for post, name in rows:
        item: dict[str, Any] = {
            "id": post.id, "text": post.text, "author": mask_name(name),
            "author_id": post.user_id, "badge": badges.get(post.user_id),
            "batch_id": post.batch_id, "product_id": post.product_id,
            "from_sample": post.sample_id is not None, "verified": True,
            "campaign_id": post.campaign_id,
            "photos": [f"/api/uploads/{names[p]}" for p in (post.photos or []) if p in names],
            "video": (f"/api/uploads/{names[post.video_id]}"
                      if post.video_id is not None and post.video_id in names else None),
            "created_at": iso(post.created_at),
        }
        if with_status:
            item |= {"status": post.status, "filtered": post.filtered,
                     "order_id": post.order_id, "sample_id": post.sample_id}
        items.append(item)
    return items


async def approved(db: AsyncSession, *, batch_id: int | None = None, product_id: int | None = None,
                   user_id: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The public 晒单 of a batch, a product or a neighbour (approved only, newest first)."""
    query = (select(Post, User.display_name).join(User, User.id == Post.user_id)
             .where(Post.status == PostStatus.APPROVED.value))
    host_id = None
    if batch_id is not None:
        query = query.where(Post.batch_id == batch_id)
        host_id = (await get_batch(db, batch_id)).owner_id
    if product_id is not None:
        query = query.where(Post.product_id == product_id)
        product = await db.get(Product, product_id)
        host_id = product.owner_id if product is not None else None
    if user_id is not None:
        query = query.where(Post.user_id == user_id)
    rows = [(p, n) for p, n in await db.execute(query.order_by(Post.id.desc()).limit(limit))]
    return await _render(db, rows, host_id)


async def queue(db: AsyncSession, actor: Principal, status: str, limit: int = 100) -> list[dict[str, Any]]:
    """The moderation list (assistants): posts of one status, oldest first."""
    _decider(actor)
    if status not in {s.value for s in PostStatus}:
        raise InvalidInput("status 无效 / Unknown status", field="status")
    rows = [(p, n) for p, n in await db.execute(
        select(Post, User.display_name).join(User, User.id == Post.user_id)
        .where(Post.status == status).order_by(Post.id).limit(limit))]
    return await _render(db, rows, None, with_status=True)


async def mine(db: AsyncSession, user_id: int) -> list[dict[str, Any]]:
    rows = (await db.execute(select(Post).where(Post.user_id == user_id)
                             .order_by(Post.id.desc()).limit(100))).scalars()
    return [{"id": p.id, "status": p.status, "order_id": p.order_id, "sample_id": p.sample_id,
             "batch_id": p.batch_id, "created_at": iso(p.created_at)} for p in rows]


async def counts(db: AsyncSession) -> dict[str, int]:
    rows = await db.execute(select(Post.status, func.count(Post.id)).group_by(Post.status))
    return {str(s): int(n) for s, n in rows}
