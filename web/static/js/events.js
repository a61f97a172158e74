// Socket.IO event names in one place. The realtime hub (realtime/live_namespace.py,
// realtime/moderation_namespace.py, realtime/actions.py) owns them; pages import these.
export const NS_LIVE = "/live";
export const NS_MOD = "/moderation";

// client → server on /live; every one is acknowledged with {ok: true, ...} or {ok: false, error}
export const SEND_COMMENT = "comment"; // {text}
export const SEND_QUESTION = "question"; // {text}
export const SEND_UPVOTE = "upvote"; // {question_id}
export const SEND_LIKE = "like"; // {count}
export const SEND_PIN_PRODUCT = "pin_product"; // {product_id} (the session's host)
export const SEND_UNPIN_PRODUCT = "unpin_product";

// server → client on /live (connect order: hello, then missed events or reload + recent, state)
export const ON_HELLO = "hello"; // {session_id, epoch, seq, resumed, user, can_send, limits}
export const ON_RELOAD = "reload"; // {reason, epoch}: history too old, recent content follows
export const ON_COMMENTS = "comments"; // [{id, seq, user:{id,name,role}, text, ts, at}]
export const ON_COMMENT_DELETED = "comment_deleted"; // {id, comment_seq, seq}
export const ON_QUESTIONS = "questions"; // [question] approved ones (on join)
export const ON_QUESTION = "question"; // question (approved) or {id, status: rejected|merged}
export const ON_STATE = "state"; // coalesced snapshot: viewers, likes, pinned, sales, groups…
export const ON_PINNED = "pinned"; // {pin}
export const ON_UNPINNED = "unpinned";
export const ON_SALE_OPENED = "sale_opened"; // {sale}
export const ON_SALE_CLOSED = "sale_closed"; // {sale}
export const ON_GROUP_OUTCOME = "group_outcome"; // {group}
export const ON_SESSION_ENDED = "session_ended"; // {ended_at}
export const ON_EVENT = "event"; // {kind, data}: other public kinds (stream_started, replay_progress); private kinds never reach a room
export const KIND_STREAM_STARTED = "stream_started"; // ON_EVENT kind: a publisher went live
export const ON_MUTED = "muted";
export const ON_UNMUTED = "unmuted";
export const ON_BANNED = "banned";
export const ON_QUESTION_REJECTED = "question_rejected"; // {id, text}: to the asker's sockets only

// /moderation: client → server
export const MOD_APPROVE = "approve"; // {question_id}
export const MOD_REJECT = "reject"; // {question_id}
export const MOD_MERGE = "merge"; // {question_id, into_id}
export const MOD_ANSWER = "answer"; // {question_id, text}
export const MOD_PIN_QUESTION = "pin_question"; // {question_id}
export const MOD_UNPIN_QUESTION = "unpin_question";
export const MOD_DELETE_COMMENT = "delete_comment"; // {seq, id}
export const MOD_MUTE = "mute"; // {user_id, duration_s?, reason?}
export const MOD_UNMUTE = "unmute"; // {user_id}
export const MOD_BAN = "ban"; // {user_id, duration_s?, reason?}
export const MOD_UNBAN = "unban"; // {user_id}
export const MOD_SLOW_MODE = "slow_mode"; // {seconds}
export const MOD_BANNED_WORDS = "banned_words"; // {words: [...]}
// /moderation: server → client
export const MOD_ON_STATE = "mod_state"; // {slow_mode_s, banned_words, mutes, bans}
export const MOD_ON_QUESTIONS = "questions"; // every question, newest first
export const MOD_ON_QUESTION = "question"; // one new or changed question
export const MOD_ON_LOG = "mod_log"; // {action, by, ts, at, ...}
