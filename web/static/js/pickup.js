// Pickup point names: orders carry only pickup_point_id and community_id, so look the point up
// in its community's list (cached per community for the page's life).
import { api } from "./api.js";

const cache = new Map();

/** "name · address" of an order's pickup point, or "" when it has none. */
export async function pickupPointText(order) {
  const point = order.pickup_point;
  if (point && typeof point === "object") return [point.name, point.address].filter(Boolean).join(" · ");
  if (typeof point === "string") return point;
  if (!order.pickup_point_id || !order.community_id) return "";
  if (!cache.has(order.community_id)) {
    cache.set(order.community_id, api(`/api/communities/${order.community_id}/pickup-points`, { auth: false }).catch(() => []));
  }
  const points = await cache.get(order.community_id);
  const found = points.find((p) => p.id === order.pickup_point_id);
  return found ? [found.name, found.address].filter(Boolean).join(" · ") : "";
}
