// The control plane's API as the GUI reads it: same origin, the sign-in cookie (sent by
// the browser, never seen by this code: it is HttpOnly) and the X-Gossamer-Gui header
// that the API requires before it takes the cookie for the admin token.

export class SignedOut extends Error {}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

const HEADERS = { "X-Gossamer-Gui": "1", Accept: "application/json" };

export async function get(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== ""));
  const url = query.toString() ? `${path}?${query}` : path;
  const response = await fetch(url, { headers: HEADERS, credentials: "same-origin" });
  if (response.status === 401) throw new SignedOut("signed out");
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body.detail || `${response.status} ${response.statusText}`);
  return body;
}

// Like get, but a 404 (a route this control plane does not have) is `fallback`.
export async function getOr(path, fallback, params = {}) {
  try {
    return await get(path, params);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 405)) return fallback;
    throw e;
  }
}

export async function signIn(token) {
  const response = await fetch("/gui/session", {
    method: "POST", credentials: "same-origin",
    headers: { ...HEADERS, Authorization: `Bearer ${token.trim()}` },
  });
  if (response.ok) return null;
  const body = await response.json().catch(() => ({}));
  return body.detail || `sign-in failed (${response.status})`;
}

export async function signOut() {
  await fetch("/gui/signout", { method: "POST", credentials: "same-origin", headers: HEADERS });
}

export async function info() {
  const response = await fetch("/", { headers: { Accept: "application/json" } });
  return response.json();
}
