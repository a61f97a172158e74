// The flash sale of the live room: the floating 讲解中 card's price, stock and countdown, and the
// buy sheet (the price THIS buyer pays, gift left, quantity within her limit, her pickup point,
// total) → hold with payment countdown → pay → order with amount, pickup point and code.
// Counters come from realtime `state`; the buyer's own price and limit from GET /api/sales/{id}
// (signed in), the same rule payment charges by. Holds use an Idempotency-Key so a double tap or
// a retry never makes a second hold.
import { api, ApiError, idempotencyKey, requireLogin, token } from "./api.js";
import { $, clock, h, yuan } from "./dom.js";
import { hasKey, t } from "./i18n.js";
import { pickupPointText } from "./pickup.js";
import { groupLabel } from "./room_view.js";

const REFUSALS = { sold_out: "sold_out", over_limit: "over_limit", not_open: "sale_not_open",
  ended: "sale_ended", not_member: "not_member", hold_expired: "pay_expired" };
const PICKUP_STORE = "linli.pickup.";

function seconds(iso) {
  if (!iso) return null;
  const at = new Date(iso).getTime();
  return Number.isNaN(at) ? null : (at - Date.now()) / 1000;
}

/** Words for an API refusal in the page's language (never the server's bilingual message). */
export function refusalText(err) {
  const code = err && err.code;
  if (code && REFUSALS[code]) return t(REFUSALS[code]);
  if (code && hasKey(`err_${code}`)) return t(`err_${code}`);
  return t("error");
}

export class SalePanel {
  /** root: the sheet's #sale; card: the floating 讲解中 card; sheet: the <dialog>. */
  constructor(root, { card, sheet }) {
    this.root = root;
    this.card = card;
    this.sheet = sheet;
    this.sale = null;
    this.details = new Map();
    this.hold = null;
    this.pendingKey = null;
    this.soldOut = false;
    this.chosen = null;
    this.pinnedProduct = null;
    this.lastSales = null;
    this.groups = [];
    this.qty = 1;
    this.points = [];
    this.communityNames = null;
    // The shop's payment providers (GET /api/payments/methods), fetched with the first hold.
    this.methods = null;
    // Set by the live page once its session ended: nothing more can be bought here.
    this.sessionEnded = false;
    this.onChange = () => {};
    $("#buy", root).addEventListener("click", () => this.buy());
    $("#pay", root).addEventListener("click", () => this.pay());
    $("#qty-minus", root).addEventListener("click", () => this.setQty(this.qty - 1));
    $("#qty-plus", root).addEventListener("click", () => this.setQty(this.qty + 1));
    $("#pickup-select", root).addEventListener("change", (e) => this.choosePoint(e.target.value));
    $("#open-buy", card).addEventListener("click", () => this.open());
    this.timer = setInterval(() => this.tick(), 250);
  }

  open() {
    if (!this.sale) return;
    if (!this.sheet.open) this.sheet.showModal();
    this.render();
  }

  /**
   * Show one sale from the state snapshot: the one the viewer picked, else the one for the
   * product being explained (讲解中), else the newest open one; other open sales become tabs.
   */
  update(sales, pinnedProductId = null) {
    if (pinnedProductId !== this.pinnedProduct) {
      // A new product is being explained: the room follows it, whatever tab was picked before.
      this.pinnedProduct = pinnedProductId;
      this.chosen = null;
    }
    if (!Array.isArray(sales) || sales.length === 0) {
      if (!this.hold) this.sale = null;
      this.renderCard();
      return;
    }
    const idOf = (s) => s.sale_id ?? s.id;
    const open = sales.filter((s) => (s.status || "open") === "open");
    const current = this.sale ? sales.find((s) => idOf(s) === idOf(this.sale)) : null;
    const pinned = pinnedProductId !== null && pinnedProductId !== undefined
      ? open.find((s) => String(s.product_id) === String(pinnedProductId)) : null;
    // While a hold is being paid the sheet stays on its sale.
    const held = this.hold && current ? current : null;
    const sale = held || open.find((s) => idOf(s) === this.chosen) || pinned
      || (current && open.includes(current) ? current : null)
      || open[open.length - 1] || current || sales[sales.length - 1];
    const id = idOf(sale);
    // A refusal said sold out; stock coming back (a refund, an expired hold) reopens the button.
    if ((this.sale && idOf(this.sale) !== id) || Number(sale.remaining) > 0) this.soldOut = false;
    if (this.sale && idOf(this.sale) !== id) this.qty = 1;
    this.sale = { ...(this.details.get(id) || {}), ...sale };
    if (!this.details.has(id)) this.fetchDetails(id);
    this.renderTabs(open, id);
    this.render();
    this.onChange();
  }

  renderTabs(open, currentId) {
    const tabs = document.getElementById("sale-tabs");
    const box = document.getElementById("sale-tabs-card");
    if (!tabs || !box) return;
    box.hidden = open.length < 2;
    if (box.hidden) return;
    tabs.replaceChildren(...open.map((s) => {
      const id = s.sale_id ?? s.id;
      return h("button", { type: "button", class: id === currentId ? "chip active" : "chip",
        "aria-pressed": id === currentId ? "true" : "false",
        text: `${s.product_name || `#${id}`} ${tabPrice(this.details.get(id), s)}`,
        on: { click: () => { this.chosen = id; this.update(this.lastSales || open, this.pinnedProduct); this.open(); } } });
    }));
  }

  currentSaleId() {
    return this.sale ? this.sale.sale_id ?? this.sale.id : null;
  }

  async fetchDetails(id, force = false) {
    if (this.details.has(id) && !force) return;
    if (!force) this.details.set(id, {});
    try {
      const data = await api(`/api/sales/${id}`, { auth: Boolean(token()) });
      this.details.set(id, data);
      if (this.currentSaleId() === id) {
        // The realtime counters are newer than the REST answer; the buyer's own fields only REST has.
        this.sale = { ...data, ...this.sale, ...pick(data, BUYER_FIELDS) };
        await this.loadPoints();
        // Again from the room's state, so the tabs show her price too.
        if (Array.isArray(this.lastSales) && this.lastSales.length) this.update(this.lastSales, this.pinnedProduct);
        else {
          this.render();
          this.onChange();
        }
      }
    } catch { /* the realtime state is enough to show the sale */ }
  }

  /** Her community's pickup points, the remembered one chosen. */
  async loadPoints() {
    const cid = this.sale && this.sale.your_community_id;
    if (!cid || (this.points.length && this.points[0].community_id === cid)) return;
    try {
      this.points = await api(`/api/communities/${cid}/pickup-points`, { auth: false });
    } catch {
      this.points = [];
    }
    const select = $("#pickup-select", this.root);
    const remembered = localStorage.getItem(PICKUP_STORE + cid);
    select.replaceChildren(...this.points.map((p) => h("option", { value: String(p.id),
      text: [p.name, p.address].filter(Boolean).join(" · ") })));
    const fallback = this.points.find((p) => p.default) || this.points[0];
    const chosen = this.points.find((p) => String(p.id) === remembered) || fallback;
    if (chosen) select.value = String(chosen.id);
    $("#pickup-field", this.root).hidden = this.points.length === 0;
  }

  choosePoint(value) {
    const cid = this.sale && this.sale.your_community_id;
    if (cid && value) localStorage.setItem(PICKUP_STORE + cid, String(value));
  }

  pointId() {
    const select = $("#pickup-select", this.root);
    return this.points.length && select.value ? Number(select.value) : null;
  }

  pointName() {
    const id = this.pointId();
    const point = this.points.find((p) => p.id === id);
    return point ? [point.name, point.address].filter(Boolean).join(" · ") : "—";
  }

  /** The unit price for this viewer: hers when signed in, else the list price. */
  unitPrice() {
    const sale = this.sale || {};
    return Number(sale.your_price_fen ?? sale.price_fen ?? 0);
  }

  maxQty() {
    const sale = this.sale || {};
    const limit = Number(sale.your_limit_left ?? sale.per_buyer_limit ?? 1);
    const stock = Number(sale.remaining ?? limit);
    return Math.max(1, Math.min(limit, stock || 1));
  }

  setQty(value) {
    this.qty = Math.max(1, Math.min(this.maxQty(), Math.trunc(value) || 1));
    this.render();
  }

  giftText() {
    const sale = this.sale || {};
    const n = Number(sale.gift_first_n || 0);
    if (n <= 0) return "";
    const text = sale.gift_text || t("gift_default", { n });
    const left = Number(sale.gift_left ?? n);
    return left > 0 ? t("gift_line", { text, n: left }) : t("gift_none_left", { text });
  }

  /** Her community's group-buy of this sale, else none. */
  myGroup() {
    const cid = this.sale && this.sale.your_community_id;
    return cid ? this.groups.find((g) => g.community_id === cid) || null : null;
  }

  priceBits(priceEl, listEl, basisEl) {
    const sale = this.sale || {};
    const unit = this.unitPrice();
    priceEl.textContent = yuan(unit);
    const list = Number(sale.list_price_fen ?? sale.price_fen ?? unit);
    listEl.hidden = !(list > unit);
    listEl.textContent = list > unit ? yuan(list) : "";
    if (list > unit) listEl.setAttribute("aria-label", `${t("list_price")} ${yuan(list)}`);
    const basis = sale.your_price_basis;
    basisEl.hidden = !(basis === "community" || basis === "group");
    basisEl.textContent = basis === "group" ? t("price_group") : basis === "community" ? t("price_community") : "";
  }

  /** The floating card: price, stock, countdown, gift and her community's group, a buy button. */
  renderCard() {
    const card = this.card;
    const sale = this.sale;
    const buyButton = $("#open-buy", card);
    if (!sale || this.sessionEnded) {
      buyButton.hidden = true;
      for (const id of ["#pin-stock", "#pin-countdown"]) $(id, card).textContent = "";
      for (const id of ["#pin-gift", "#pin-group", "#pin-list", "#pin-basis"]) $(id, card).hidden = true;
      return;
    }
    card.hidden = false;
    const name = $("#pin-name", card);
    if (!name.textContent) name.textContent = sale.product_name || (sale.product && sale.product.name) || "";
    this.priceBits($("#pin-price", card), $("#pin-list", card), $("#pin-basis", card));
    $("#pin-stock", card).textContent = t("stock_line", { n: Number(sale.remaining ?? 0) });
    const gift = this.giftText();
    $("#pin-gift", card).hidden = !gift;
    $("#pin-gift", card).textContent = gift;
    const group = this.myGroup();
    const groupEl = $("#pin-group", card);
    groupEl.hidden = !group;
    if (group) {
      const label = groupLabel(group);
      groupEl.textContent = `${t("my_community")} · ${label.text}`;
      groupEl.classList.add("mine");
    }
    buyButton.hidden = false;
  }

  render() {
    this.renderCard();
    const sale = this.sale;
    if (!sale) return;
    const name = sale.product_name || (sale.product && sale.product.name) || "";
    $("#sale-product", this.root).textContent = name;
    this.priceBits($("#sale-price", this.root), $("#sale-list", this.root), $("#sale-basis", this.root));
    $("#sale-remaining", this.root).textContent = `${Number(sale.remaining ?? 0)} ${t("units")}`;
    const gift = this.giftText();
    $("#sale-gift", this.root).hidden = !gift;
    $("#sale-gift", this.root).textContent = gift;
    const group = this.myGroup();
    const groupEl = $("#sale-group", this.root);
    groupEl.hidden = !group;
    if (group) groupEl.textContent = `${t("my_community")} · ${groupLabel(group).text}`;
    if (this.qty > this.maxQty()) this.qty = this.maxQty();
    $("#qty", this.root).textContent = String(this.qty);
    $("#qty-minus", this.root).disabled = this.qty <= 1;
    $("#qty-plus", this.root).disabled = this.qty >= this.maxQty();
    const limit = Number(sale.per_buyer_limit || 0);
    $("#qty-limit", this.root).textContent = limit
      ? t("qty_limit", { limit, left: Number(sale.your_limit_left ?? limit) }) : "";
    $("#sale-total", this.root).textContent = yuan(this.unitPrice() * this.qty);
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
      $("#pin-countdown", this.card).textContent = toEnd !== null && state === "open" ? t("ends_in_line", { t: clock(toEnd) }) : "";
      const words = { open: "buy", sold_out: "sold_out", ended: "sale_ended", not_open: "sale_not_open" };
      const buy = $("#buy", this.root);
      buy.textContent = t(words[state] || "buy");
      buy.disabled = state !== "open" || Boolean(this.hold) || this.busy === true;
      $("#open-buy", this.card).textContent = t(words[state] || "buy");
      $("#sale-form", this.root).hidden = Boolean(this.hold);
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

  showError(text, extra = null) {
    const el = $("#sale-error", this.root);
    el.replaceChildren(...(text ? [h("span", { text }), extra] : []).filter(Boolean));
    el.hidden = !text;
  }

  async joinOffer() {
    const sale = this.sale || {};
    const cid = (sale.community_ids || [])[0];
    if (!cid) return null;
    if (!this.communityNames) {
      try {
        this.communityNames = new Map((await api("/api/communities", { auth: false })).map((c) => [c.id, c.name]));
      } catch {
        this.communityNames = new Map();
      }
    }
    const name = this.communityNames.get(cid) || "";
    const button = h("button", { type: "button", class: "primary", id: "join-community",
      text: t("join_community", { name }) });
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const answer = await api(`/api/communities/${cid}/join`, { method: "POST" });
        this.showError(answer.status === "approved" ? "" : t("join_requested"));
        if (answer.status === "approved") this.fetchDetails(this.currentSaleId(), true);
      } catch (err) {
        this.showError(refusalText(err));
      }
    });
    return h("p", { class: "join-offer" }, button);
  }

  async buy() {
    if (!requireLogin() || !this.sale || this.busy) return;
    const id = this.currentSaleId();
    // Kept until an answer arrives, so a retry after a network error reuses the same key.
    this.pendingKey ??= idempotencyKey();
    this.busy = true;
    this.showError("");
    this.tick();
    try {
      const hold = await api(`/api/sales/${id}/holds`, {
        method: "POST", body: { qty: this.qty }, headers: { "Idempotency-Key": this.pendingKey },
      });
      this.pendingKey = null;
      this.hold = hold;
      if (hold.remaining !== undefined) this.sale.remaining = hold.remaining;
      const qty = Number(hold.qty ?? this.qty);
      const total = Number(hold.unit_price_fen ?? this.unitPrice()) * qty;
      $("#hold-qty", this.root).textContent = `${qty} ${t("units")}`;
      $("#hold-pickup", this.root).textContent = this.pointName();
      $("#hold-total", this.root).textContent = yuan(total);
      $("#pay", this.root).textContent = t("buy_confirm", { amount: yuan(total) });
      await this.showMethods();
      $("#hold", this.root).hidden = false;
      $("#confirmation", this.root).hidden = true;
    } catch (err) {
      if (err instanceof ApiError && err.status !== 0) this.pendingKey = null;
      if (err instanceof ApiError && err.code === "sold_out") this.soldOut = true;
      this.showError(refusalText(err), err instanceof ApiError && err.code === "not_member" ? await this.joinOffer() : null);
    } finally {
      this.busy = false;
      this.render();
    }
  }

  /** With more than one provider configured the buyer chooses (WeChat Pay first inside WeChat,
   * Alipay first elsewhere, as the server orders them); with one there is nothing to choose. */
  async showMethods() {
    const box = $("#pay-methods", this.root);
    if (this.methods === null) {
      try {
        this.methods = (await api("/api/payments/methods")).items || [];
      } catch {
        this.methods = [];  // the server picks for her
      }
    }
    box.querySelectorAll("label").forEach((el) => el.remove());
    box.hidden = this.methods.length < 2;
    if (box.hidden) return;
    for (const method of this.methods) {
      const key = `pay_method_${method.name}`;
      box.append(h("label", { class: "pay-method" },
        h("input", { type: "radio", name: "pay-method", value: method.name, checked: Boolean(method.preferred) }),
        h("span", { text: hasKey(key) ? t(key) : method.name })));
    }
  }

  chosenMethod() {
    const picked = this.root.querySelector('#pay-methods input[name="pay-method"]:checked');
    return picked ? picked.value : null;
  }

  async pay() {
    if (!this.hold) return;
    const pay = $("#pay", this.root);
    pay.disabled = true;
    const point = this.pointId();
    try {
      const holdId = this.hold.hold_id;
      const body = point ? { pickup_point_id: point } : {};
      const method = this.chosenMethod();
      if (method) body.provider = method;
      let paid = await api(`/api/holds/${encodeURIComponent(holdId)}/pay`, { method: "POST", body });
      if (paid.status === "pending") {
        // A real provider: the buyer pays in WeChat Pay's page, sheet or by scanning its QR code.
        if (paid.redirect_url) {
          location.assign(paid.redirect_url);
          return;
        }
        paid = await this.waitForPayment(holdId, paid);
        if (!paid) return;
      }
      this.hold = null;
      $("#hold", this.root).hidden = true;
      await this.confirm(paid);
      this.qty = 1;
      this.fetchDetails(this.currentSaleId(), true);
    } catch (err) {
      this.showError(refusalText(err));
      if (err.code === "hold_expired" || err.code === "expired") {
        this.hold = null;
        $("#hold", this.root).hidden = true;
      }
    } finally {
      pay.disabled = false;
      this.render();
    }
  }

  /** Shows the QR code (desktop) or opens WeChat's payment sheet (inside WeChat), then waits
   * for the order the provider's notification makes; null when the hold lapsed meanwhile. */
  async waitForPayment(holdId, pending) {
    const box = $("#hold", this.root);
    box.querySelector(".pay-wait")?.remove();
    const wait = h("div", { class: "pay-wait", role: "status" },
      h("p", { text: t(pending.qr_svg ? "pay_scan_wechat" : "pay_in_wechat") }));
    if (pending.qr_svg) wait.append(h("img", { src: pending.qr_svg, alt: t("pay_qr_alt"), width: 200, height: 200 }));
    box.append(wait);
    if (pending.jsapi && window.WeixinJSBridge) {
      window.WeixinJSBridge.invoke("getBrandWCPayRequest", pending.jsapi, () => {});
    }
    try {
      while (this.hold && this.hold.hold_id === holdId) {
        const mine = await api("/api/orders?mine=1&limit=20");
        const order = (mine.items || []).find((o) => o.hold_id === holdId);
        if (order) return { ...order, order_id: order.id };
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
      return null;
    } finally {
      wait.remove();
    }
  }

  async confirm(paid) {
    let order = paid;
    if (order.order_id !== undefined) {
      try {
        order = { ...paid, ...(await api(`/api/orders/${paid.order_id}`)) };
      } catch { /* the payment answer is enough to confirm */ }
    }
    $("#order-id", this.root).textContent = String(order.order_id ?? order.id ?? "");
    $("#order-amount", this.root).textContent = order.amount_fen !== undefined ? yuan(order.amount_fen) : "—";
    $("#pickup-point", this.root).textContent = (await pickupPointText(order)) || "—";
    $("#pickup-code", this.root).textContent = String(order.pickup_code || "—");
    $("#order-gift", this.root).hidden = !order.gift;
    $("#order-gift", this.root).textContent = order.gift ? t("order_has_gift") : "";
    $("#confirmation", this.root).hidden = false;
  }
}

/** A tab's price: the buyer's own once known, else the list price. */
function tabPrice(details, sale) {
  const fen = (details && details.your_price_fen) ?? sale.price_fen;
  return fen !== undefined && fen !== null ? yuan(fen) : "";
}

const BUYER_FIELDS = ["your_price_fen", "your_price_basis", "list_price_fen", "your_community_id",
  "your_community_name", "your_member", "your_bought", "your_limit_left", "community_ids", "gift_text",
  "per_buyer_limit"];

function pick(data, names) {
  const out = {};
  for (const name of names) if (name in data) out[name] = data[name];
  return out;
}
