"""Interest tags a member picks on their profile (烘焙爱好者, 宝妈, 长辈 …).

A fixed list of stable keys: the page shows each key in the viewer's language from its
translation table, and a shop can group its neighbours by them without free text to moderate.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, UniqueConstraint, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from commerce.accounts import User
from commerce.base import Base
from commerce.errors import InvalidInput
from commerce.locks import lock_row

TAGS = ("baking", "parent", "senior", "fitness", "vegetarian", "fruit", "cooking", "pets",
        "office", "wellness")
MAX_TAGS = 5


class UserTag(Base):
    __tablename__ = "user_tags"
    __table_args__ = (UniqueConstraint("user_id", "tag", name="uq_user_tags_pair"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    tag: Mapped[str] = mapped_column(String(24))


async def tags_of(db: AsyncSession, user_id: int) -> list[str]:
    rows = await db.execute(select(UserTag.tag).where(UserTag.user_id == user_id))
    mine = set(rows.scalars())
    return [tag for tag in TAGS if tag in mine]


async def set_tags(db: AsyncSession, user_id: int, tags: list[str]) -> list[str]:
    """Replace the user's tags with `tags` (known keys, at most MAX_TAGS, duplicates folded)."""
    wanted = list(dict.fromkeys(tags))
    unknown = [tag for tag in wanted if tag not in TAGS]
    if unknown:
        raise InvalidInput("未知的兴趣标签 / Unknown interest tag", field="tags",
                           unknown=unknown[:5], allowed=list(TAGS))
    if len(wanted) > MAX_TAGS:
        raise InvalidInput(f"最多选 {MAX_TAGS} 个 / At most {MAX_TAGS} tags", field="tags",
                           max=MAX_TAGS)
    # Two saves at once would both delete, then both insert: the user's row serialises them.
    await lock_row(db, User, user_id)
    await db.execute(delete(UserTag).where(UserTag.user_id == user_id))
    db.add_all([UserTag(user_id=user_id, tag=tag) for tag in wanted])
    await db.flush()
    return [tag for tag in TAGS if tag in wanted]
