// The one way the page talks to gridgate: the documented HTTP API under
// /api/v1, with the token from sessionStorage in an Authorization header.
// The token is never put in a URL, in localStorage or in a log line.

const TOKEN_KEY = 'gridgate.token';
// Resolved against this module's own URL (/console/api.js -> /api/v1/), so
// the console keeps working behind a reverse proxy that adds a prefix.
const BASE = new URL('../api/v1/', import.meta.url);

export const session = {
  token() { return sessionStorage.getItem(TOKEN_KEY); },
  signIn(token) { sessionStorage.setItem(TOKEN_KEY, token); },
  signOut() { sessionStorage.clear(); },
};

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || code);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

// Gateway clock minus ours, from the Date header (whole seconds), so that
// "time left" counts on the gateway's clock when this device's is off.
let skewMs = 0;
export function now() { return Date.now() + skewMs; }

let unauthorizedHandler = () => {};
export function onUnauthorized(fn) { unauthorizedHandler = fn; }

// api('GET', 'cases', {query}) / api('POST', 'cases/4/feedback', {body}):
// the parsed JSON answer, or throws ApiError (status 0: no answer at all).
export async function api(method, path, { query, body, signal } = {}) {
  const token = session.token();
  if (!token) throw new ApiError(401, 'unauthorized', 'not signed in');
  const url = new URL(path, BASE);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const headers = { Accept: 'application/json', Authorization: `Bearer ${token}` };
  const init = { method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer', signal };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', e.message);
  }
  const date = Date.parse(res.headers.get('Date') || '');
  if (!Number.isNaN(date)) {
    const skew = date - Date.now();
    skewMs = Math.abs(skew) > 2000 ? skew : 0; // the header has 1 s steps
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data?.error || `http_${res.status}`, data?.detail || res.statusText);
    if (res.status === 401) unauthorizedHandler(err);
    throw err;
  }
  return data;
}

// Who the token is: GET /me ({name, role, scope, links}).
export function me() { return api('GET', 'me'); }

// Every page of GET /grids (the grids in scope, with street, community
// and roster): the names the list and the figures show for ids.
export async function grids() {
  const data = await api('GET', 'grids');
  return data?.grids || [];
}
