// What the server offers, read from its OpenAPI document once per page: pages show an action
// only when its endpoint exists (subsystems land at different times and may be switched off).
let doc = null;

export async function openapi() {
  doc ??= fetch("/api/openapi.json").then((r) => (r.ok ? r.json() : { paths: {} })).catch(() => ({ paths: {} }));
  return doc;
}

/** True when `method path` is documented (path in OpenAPI form, e.g. /api/orders/{id}/refund). */
export async function has(method, path) {
  const spec = await openapi();
  const item = spec.paths && spec.paths[path];
  return Boolean(item && item[method.toLowerCase()]);
}

/** Documented GET paths under a prefix, for pages that list what is available. */
export async function getPaths(prefix) {
  const spec = await openapi();
  return Object.entries(spec.paths || {})
    .filter(([path, item]) => path.startsWith(prefix) && item.get)
    .map(([path, item]) => ({ path, summary: item.get.summary || "" }));
}
