// The comment list: batches arrive up to ~10 a second with up to hundreds of comments each.
// Each animation frame appends everything pending in one DocumentFragment, trims the list to a
// fixed length, and scrolls only when the reader is already at the bottom. No innerHTML.
import { h } from "./dom.js";

export const MAX_COMMENTS = 200;

export class CommentList {
  constructor(container, { max = MAX_COMMENTS, actions = null, times = false } = {}) {
    this.container = container;
    this.max = max;
    this.actions = actions;
    this.times = times;
    this.pending = [];
    this.seen = new Map();
    this.frame = 0;
  }

  /** Queue a batch; rendering happens once per frame however many batches arrive. */
  add(batch) {
    for (const comment of batch) {
      if (comment && comment.id !== undefined && !this.seen.has(String(comment.id))) {
        this.pending.push(comment);
        this.seen.set(String(comment.id), null);
      }
    }
    if (!this.frame && this.pending.length) {
      this.frame = requestAnimationFrame(() => this.flush());
    }
  }

  flush() {
    this.frame = 0;
    const items = this.pending.splice(0);
    if (!items.length) return;
    const box = this.container;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const fragment = document.createDocumentFragment();
    for (const comment of items.slice(-this.max)) {
      const row = this.render(comment);
      this.seen.set(String(comment.id), row);
      fragment.append(row);
    }
    box.append(fragment);
    let extra = box.childElementCount - this.max;
    while (extra-- > 0) {
      const first = box.firstElementChild;
      this.seen.delete(first.dataset.id);
      first.remove();
    }
    // Forget ids far behind the window so the dedupe map stays bounded too.
    if (this.seen.size > this.max * 5) {
      for (const [id, row] of this.seen) if (!row || !row.isConnected) this.seen.delete(id);
    }
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  render(comment) {
    const user = comment.user || {};
    const name = typeof user === "string" ? user : user.display_name || user.name || user.username || "";
    const row = h("li", { class: "comment", dataset: { id: String(comment.id) } });
    // `at` is ISO 8601 with its offset (as every API time); `ts` (epoch ms) is its older twin.
    const when = comment.at || comment.ts;
    if (this.times && when) {
      const at = new Date(when);
      row.append(h("time", { class: "comment-time", datetime: at.toISOString(),
        text: at.toLocaleTimeString(undefined, { hour12: false }) }));
    }
    row.append(h("span", { class: "comment-user", text: name }));
    // A 品鉴官 of this host's programme: the server puts her badge in the author info.
    if (typeof user === "object" && user.badge) row.append(h("span", { class: "koc-badge", text: String(user.badge) }));
    row.append(h("span", { class: "comment-text", text: comment.text || "" }));
    if (this.actions) row.append(this.actions(comment));
    return row;
  }

  remove(id) {
    const row = this.seen.get(String(id));
    if (row) row.remove();
    this.pending = this.pending.filter((c) => String(c.id) !== String(id));
    this.seen.set(String(id), null);
  }

  clear() {
    this.container.replaceChildren();
    this.pending = [];
    this.seen.clear();
  }
}
