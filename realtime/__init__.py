"""Live room realtime hub (Socket.IO v5 at /socket.io/). The wire contract, for page authors:

/live — connect with auth {"session_id": int, "token"?: str, "epoch"?: str, "last_seq"?: int}
  (no token: watch only). Refusals arrive as connect_error with
  err.data = {"code": "invalid_input"|"unauthorized"|"not_found"|"banned", "message", ...}.
  On connect, in order: `hello {session_id, epoch, seq, resumed, user|null, can_send, limits}`;
  then either the missed frames (when epoch/last_seq were given and still in history) or
  [`reload {reason: "epoch_changed"|"too_old"|"ahead_of_server", epoch}` if they were not]
  `comments [...recent ≤50]` + `questions [approved...]`; then `state {...}`.
  Live frames (each room event carries a per-room `seq`; keep the highest for reconnects):
    comments [{id, seq, user: {id, name, role}, text, ts, at}]   (batched, ≤ one frame / 100 ms;
             ts: epoch ms, at: the same instant in ISO 8601 with offset)
    comment_deleted {seq, id, comment_seq}
    question {seq, id, text, user, status: "approved", votes, answer, pinned, product_id, ...}
             or {seq, id, status: "rejected"|"merged", merged_into_id} (remove it from the list)
    pinned {seq, pin: {product_id, name, price_fen, unit, batch_id, pinned_at, ...}}
    unpinned {seq, pin: null}
    sale_opened / sale_closed {seq, sale: {...}}, group_outcome {seq, group: {...}},
    session_ended {seq, ended_at}, event {seq, kind, data} (other kinds, e.g. replay_progress)
    state {session_id, v, ts, at, viewers, likes, orders_paid, pinned, pinned_question, slow_mode_s,
           status, ended_at, sales: [{sale_id, ..., remaining, held, sold, gift_left}],
           groups: [{group_id, community_name, count, threshold, ...}], question_votes: {id: n}}
           (≤ 10 per second, latest value wins; ignore a `v` lower than one already shown)
    muted {until, reason, ...} / unmuted {user_id} / banned {until, reason} (then disconnected)
    question_rejected {id, text}: to the asker's own sockets only, when staff reject her question
    reload {reason, epoch}: history was lost; reconnect without last_seq
    refused {event, code, message, ...}: a refused client event (also given as the ack)
  Client → server (ack = {"ok": true, ...} or {"ok": false, "error": {code, message, ...}}):
    comment {text} → {id, seq, filtered}; question {text} → {question_id, status: "pending"};
    upvote {question_id} → {votes}; like {count?≤10}; pin_product {product_id} / unpin_product {}
    (the session's host or an admin). Codes: login_required, muted, banned, slow_mode,
    rate_limited, too_long, empty, unknown_event, invalid_input, forbidden, invalid_state, conflict.

/moderation — auth {"token", "session_id"}; the session's host, assistants, admins only.
  On connect: `mod_state {slow_mode_s, banned_words, mutes, bans}`, `questions [all]`; then
  `question {...full...}` on every change and `mod_log {action, by, ts, at, ...}` on every action.
  Client → server: delete_comment {seq, id?}; mute/ban {user_id, duration_s?, reason?}
  (no duration = permanent); unmute/unban {user_id}; slow_mode {seconds 0..3600};
  banned_words {words: [...]} (replaces the list; matches are masked with *);
  approve/reject/pin_question {question_id}; unpin_question {}; merge {question_id, into_id};
  answer {question_id, text}; pin_product {product_id}; unpin_product {}.
"""
