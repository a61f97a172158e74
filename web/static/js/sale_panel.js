// The flash-sale card of the live room: countdown, stock, buy → hold (payment countdown) → pay →
// order confirmation with pickup point and code. Stock comes from realtime `state`; the buy path
// is REST with an Idempotency-Key so a double tap or a retry never makes a second hold.
import { api, ApiError, idempotencyKey, requireLogin } from "./api.js";
import { $, clock, h, yuan } from "./dom.js";
import { t } from "./i18n.js";
import { pickupPointText } from "./pickup.js";

const REFUSALS = { sold_out: "sold_out", over_limit: "over_limit", not_open: "sale_not_open",
  ended: "sale_ended", not_member: "not_member" };

function seconds(iso) {
  if (!iso) return null;
  const at = new Date(iso).getTime();
  return Number.isNaN(at) ? null : (at - Date.now()) / 1000;
}

export class SalePanel {
  constructor(root) {
    this.root = root;
    this.sale = null;
    this.details = new Map();
    this.hold = null;
    this.pendingKey = null;
    this.soldOut = false;
    this.chosen = null;
    this.lastSales = null;
    // Set by the live page once its session ended: nothing more can be bought here.
    this.sessionEnded = false;
    this.onChange = () => {};
    $("#buy", root).addEventListener("click", () => this.buy());
    $("#pay", root).addEventListener("click", () => this.pay());
    this.timer = setInterval(() => this.tick(), 250);
  }

  /**
   * Show one sale from the state snapshot: the one the viewer picked, else the one for the
   * pinned product, else the newest open one; other open sales appear as tabs.
   */
  update(sales, pinnedProductId = null) {
    if (!Array.isArray(sales) || sales.length === 0) {
      if (!this.hold) this.root.hidden = true;
      return;
    }
    const idOf = (s) => s.sale_id ?? s.id;
    const open = sales.filter((s) => (s.status || "open") === "open");
    const current = this.sale ? sales.find((s) => idOf(s) === idOf(this.sale)) : null;
    const sale = open.find((s) => idOf(s) === this.chosen)
      || (pinnedProductId !== null ? open.find((s) => s.product_id === pinnedProductId) : null)
      || (current && open.includes(current) ? current : null)
      || open[open.length - 1] || current || sales[sales.length - 1];
    const id = idOf(sale);
    // A refusal said sold out; stock coming back (a refund, an expired hold) reopens the button.
    if ((this.sale && idOf(this.sale) !== id) || Number(sale.remaining) > 0) this.soldOut = false;
    this.sale = { ...(this.details.get(id) || {}), ...sale };
    if (!this.details.has(id)) this.fetchDetails(id);
    this.renderTabs(open, id);
    this.render();
    this.onChange();
  }

  renderTabs(open, currentId) {
    const tabs = $("#sale-tabs", this.root);
    tabs.hidden = open.length < 2;
    if (tabs.hidden) return;
    tabs.replaceChildren(...open.map((s) => {
      const id = s.sale_id ?? s.id;
      return h("button", { type: "button", class: id === currentId ? "chip active" : "chip",
        text: `${s.product_name || `#${id}`} ${s.price_fen !== undefined ? yuan(s.price_fen) : ""}`,
        on: { click: () => { this.chosen = id; this.update(this.lastSales || open); } } });
    }));
  }

  currentSaleId() {
    return this.sale ? this.sale.sale_id ?? this.sale.id : null;
  }

  async fetchDetails(id) {
    this.details.set(id, {});
    try {
      const data = await api(`/api/sales/${id}`, { auth: false });
      this.details.set(id, data);
      if (this.sale && (this.sale.sale_id ?? this.sale.id) === id) {
        this.sale = { ...data, ...this.sale };
        this.render();
      }
    } catch { /* the realtime state is enough to sell */ }
  }

  render() {
    const sale = this.sale;
    if (!sale) return;
    this.root.hidden = false;
    const name = sale.product_name || (sale.product && sale.product.name) || "";
    $("#sale-product", this.root).textContent = name;
    $("#sale-price", this.root).textContent = sale.price_fen !== undefined ? yuan(sale.price_fen) : "";
    const remaining = Number(sale.remaining ?? 0);
    $("#sale-remaining", this.root).textContent = `${remaining} ${t("units")}`;
    const giftBox = $("#sale-gift-box", this.root);
    giftBox.hidden = !(Number(sale.gift_first_n || 0) > 0 || Number(sale.gift_left || 0) > 0);
    $("#sale-gift", this.root).textContent = String(sale.gift_left ?? 0);
    this.tick();
  }

  state() {
    const sale = this.sale;
    if (!sale) return "none";
    if (this.sessionEnded) return "ended";
    if (sale.status === "closed" || sale.status === "ended") return "ended";
    const toStart = seconds(sale.starts_at);
    if (toStart !== null && toStart > 0) return "not_open";
    const toEnd = seconds(sale.ends_at);
    if (toEnd !== null && toEnd <= 0) return "ended";
    if (this.soldOut || (Number(sale.remaining ?? 1) <= 0 && Number(sale.held ?? 0) <= 0)) return "sold_out";
    return "open";
  }

  tick() {
    const sale = this.sale;
    if (sale) {
      const state = this.state();
      const toStart = seconds(sale.starts_at);
      const toEnd = seconds(sale.ends_at);
      // No end and already started: nothing to count down.
      $("#sale-countdown-box", this.root).hidden = toEnd === null && !(toStart !== null && toStart > 0);
      const label = $("#sale-countdown-label", this.root);
      const value = $("#sale-countdown", this.root);
      if (state === "not_open" && toStart !== null) {
        label.textContent = t("sale_starts_in");
        value.textContent = clock(toStart);
      } else {
        label.textContent = t("sale_ends_in");
        value.textContent = toEnd === null ? "--:--" : clock(toEnd);
      }
      const buy = $("#buy", this.root);
      const words = { open: "buy", sold_out: "sold_out", ended: "sale_ended", not_open: "sale_not_open" };
      buy.textContent = t(words[state] || "buy");
      buy.disabled = state !== "open" || Boolean(this.hold) || this.busy === true;
    }
    if (this.hold) {
      const left = seconds(this.hold.expires_at);
      $("#hold-countdown", this.root).textContent = clock(left ?? 0);
      if (left !== null && left <= 0) {
        this.hold = null;
        $("#hold", this.root).hidden = true;
        this.showError(t("pay_expired"));
      }
    }
  }

  showError(text) {
    const el = $("#sale-error", this.root);
    el.textContent = text;
    el.hidden = !text;
  }

  async buy() {
    if (!requireLogin() || !this.sale || this.busy) return;
    const id = this.sale.sale_id ?? this.sale.id;
    // Kept until an answer arrives, so a retry after a network error reuses the same key.
    this.pendingKey ??= idempotencyKey();
    this.busy = true;
    this.showError("");
    this.tick();
    try {
      const hold = await api(`/api/sales/${id}/holds`, {
        method: "POST", body: { qty: 1 }, headers: { "Idempotency-Key": this.pendingKey },
      });
      this.pendingKey = null;
      this.hold = hold;
      if (hold.remaining !== undefined) this.sale.remaining = hold.remaining;
      $("#hold", this.root).hidden = false;
      $("#confirmation", this.root).hidden = true;
    } catch (err) {
      if (err instanceof ApiError && err.status !== 0) this.pendingKey = null;
      const key = err instanceof ApiError ? REFUSALS[err.code] : null;
      if (err instanceof ApiError && err.code === "sold_out") this.soldOut = true;
      this.showError(key ? t(key) : `${t("error")}: ${err.message}`);
    } finally {
      this.busy = false;
      this.render();
    }
  }

  async pay() {
    if (!this.hold) return;
    const pay = $("#pay", this.root);
    pay.disabled = true;
    try {
      const paid = await api(`/api/holds/${encodeURIComponent(this.hold.hold_id)}/pay`, { method: "POST" });
      this.hold = null;
      $("#hold", this.root).hidden = true;
      await this.confirm(paid);
    } catch (err) {
      this.showError(err.code === "hold_expired" || err.code === "expired" ? t("pay_expired") : `${t("error")}: ${err.message}`);
      if (err.code === "hold_expired" || err.code === "expired") {
        this.hold = null;
        $("#hold", this.root).hidden = true;
      }
    } finally {
      pay.disabled = false;
      this.render();
    }
  }

  async confirm(paid) {
    let order = paid;
    if (!order.pickup_code && order.order_id !== undefined) {
      try {
        order = { ...paid, ...(await api(`/api/orders/${paid.order_id}`)) };
      } catch { /* the payment answer is enough to confirm */ }
    }
    $("#order-id", this.root).textContent = String(order.order_id ?? order.id ?? "");
    $("#pickup-point", this.root).textContent = (await pickupPointText(order)) || "—";
    $("#pickup-code", this.root).textContent = String(order.pickup_code || "—");
    $("#confirmation", this.root).hidden = false;
  }
}
