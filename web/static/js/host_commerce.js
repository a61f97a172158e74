// The host's commerce controls: products (add, pin 讲解中), flash sales (open, close) and
// per-community group-buys, all through the public REST API.
import { api } from "./api.js";
import { $, h, toFen, toast, yuan } from "./dom.js";
import { t } from "./i18n.js";

export class HostCommerce {
  constructor(sessionId, { pin, sell }) {
    this.id = sessionId;
    this.pin = pin;
    this.sell = sell;
    this.products = [];
    this.communities = [];
    $("#product-form").addEventListener("submit", (e) => { e.preventDefault(); this.addProduct(); });
    $("#sale-form").addEventListener("submit", (e) => { e.preventDefault(); this.openSale(); });
    $("#sale-product").addEventListener("change", () => this.suggestPrice());
  }

  error(text) {
    $("#sale-error").textContent = text || "";
    $("#sale-error").hidden = !text;
  }

  async load() {
    const [products, communities] = await Promise.all([
      api("/api/products").catch(() => []),
      api("/api/communities", { auth: false }).catch(() => []),
    ]);
    this.products = products;
    this.communities = communities;
    this.renderProducts();
    $("#sale-communities").replaceChildren(...communities.map((c) => h("option", { value: String(c.id), text: c.name })));
    await this.loadSales();
  }

  renderProducts() {
    $("#products").replaceChildren(...this.products.map((p) => h("li", { dataset: { productId: String(p.id) } },
      h("b", { text: p.name }), h("span", { class: "price", text: yuan(p.price_fen) }),
      h("span", { class: "product-actions" },
        h("button", { type: "button", class: "chip pin-product", text: t("pin"), on: { click: () => this.pin(p.id) } }),
        h("button", { type: "button", class: "chip sell-product", text: t("console_sell"), on: { click: () => this.sell(p.id) } })))));
    const select = $("#sale-product");
    const chosen = select.value;
    select.replaceChildren(...this.products.map((p) => h("option", { value: String(p.id), text: `${p.name} ${yuan(p.price_fen)}` })));
    if (chosen) select.value = chosen;
    this.suggestPrice();
  }

  suggestPrice() {
    const product = this.products.find((p) => String(p.id) === $("#sale-product").value);
    if (product && !$("#sale-price").value) $("#sale-price").value = (product.price_fen / 100).toFixed(2);
  }

  async addProduct() {
    const price = toFen($("#product-price").value);
    if (price === null) return toast(t("price_yuan"), "error");
    try {
      const product = await api("/api/products", { method: "POST", body: { name: $("#product-name").value.trim(), price_fen: price } });
      this.products.push(product);
      $("#product-name").value = "";
      $("#product-price").value = "";
      this.renderProducts();
    } catch (err) {
      toast(`${t("error")}: ${err.message}`, "error");
    }
  }

  async openSale() {
    this.error("");
    const price = toFen($("#sale-price").value);
    const minutes = Number($("#sale-duration").value);
    if (price === null) return this.error(t("price_yuan"));
    const communityIds = [...$("#sale-communities").selectedOptions].map((o) => Number(o.value));
    const body = {
      product_id: Number($("#sale-product").value), stock: Number($("#sale-stock").value),
      price_fen: price, per_buyer_limit: Number($("#sale-limit").value),
      ends_at: new Date(Date.now() + minutes * 60_000).toISOString(),
      gift_first_n: Number($("#sale-gift").value || 0),
    };
    if (communityIds.length) body.community_ids = communityIds;
    try {
      await api(`/api/sessions/${this.id}/sales`, { method: "POST", body });
      await this.loadSales();
    } catch (err) {
      this.error(`${t("error")}: ${err.message}`);
    }
  }

  /** Refresh the sale rows in place: a periodic refresh must never wipe a form being typed in. */
  async loadSales() {
    const sales = await api(`/api/sessions/${this.id}/sales`, { auth: false }).catch(() => null);
    if (!sales) return;
    const list = $("#sales");
    const rows = new Map([...list.children].map((row) => [row.dataset.saleId, row]));
    for (const sale of sales.slice(-20)) {
      const row = rows.get(String(sale.id));
      if (row) this.updateRow(row, sale);
      else list.prepend(this.saleRow(sale));
    }
  }

  updateRow(row, sale) {
    row.querySelector(".sale-counts").textContent = this.countsText(sale);
    row.querySelector(".sale-status").textContent = t(`sale_status_${sale.status}`);
    if (sale.status !== "open" && sale.status !== "scheduled") {
      for (const el of row.querySelectorAll(".close-sale, .group-more")) el.remove();
    }
  }

  countsText(sale) {
    return `${t("stock_left")} ${sale.remaining}/${sale.initial} · ${t("held")} ${sale.held} · ${t("sold")} ${sale.sold}`;
  }

  saleRow(sale) {
    const name = (sale.product && sale.product.name) || `#${sale.product_id}`;
    const row = h("li", { class: "card", dataset: { saleId: String(sale.id) } },
      h("b", { text: name }), h("span", { class: "price", text: yuan(sale.price_fen) }),
      h("span", { class: "muted sale-counts", text: this.countsText(sale) }),
      h("span", { class: "badge sale-status", text: t(`sale_status_${sale.status}`) }));
    if (sale.status === "open" || sale.status === "scheduled") {
      row.append(h("button", { type: "button", class: "chip danger close-sale", text: t("close_sale"), on: { click: async () => {
        try {
          await api(`/api/sales/${sale.id}/close`, { method: "POST" });
          await this.loadSales();
        } catch (err) { this.error(`${t("error")}: ${err.message}`); }
      } } }));
      row.append(this.groupForm(sale));
    }
    return row;
  }

  groupForm(sale) {
    const communities = this.communities.filter((c) => !sale.community_ids || !sale.community_ids.length || sale.community_ids.includes(c.id));
    const select = h("select", { class: "group-community" }, ...communities.map((c) => h("option", { value: String(c.id), text: c.name })));
    const threshold = h("input", { class: "group-threshold", type: "number", min: "1", value: "10" });
    const price = h("input", { class: "group-price", inputmode: "decimal", value: ((sale.price_fen * 0.9) / 100).toFixed(2) });
    // Folded: a phone shows each sale as one line until the host wants a group-buy on it.
    const form = h("form", { class: "inline group-form", on: { submit: async (e) => {
      e.preventDefault();
      const fen = toFen(price.value);
      if (fen === null) return this.error(t("group_price_yuan"));
      try {
        await api(`/api/sales/${sale.id}/group-buys`, { method: "POST", body: {
          community_id: Number(select.value), threshold: Number(threshold.value), unit: "people",
          deadline: sale.ends_at || new Date(Date.now() + 3600_000).toISOString(), group_price_fen: fen,
        } });
        toast(t("saved"));
      } catch (err) { this.error(`${t("error")}: ${err.message}`); }
    } } },
    h("label", {}, h("span", { text: t("community") }), select),
    h("label", {}, h("span", { text: t("threshold") }), threshold),
    h("label", {}, h("span", { text: t("group_price_yuan") }), price),
    h("button", { type: "submit", text: t("open_group") }));
    return h("details", { class: "console-more group-more" }, h("summary", { text: t("open_group") }), form);
  }
}
