/*
 * The staff pages' one way to call the JSON API under /staff/api/ (console.js and schedule.js
 * import it): the cookie session, X-CSRF-Token on every change, JSON both ways, and a 401 that
 * ends the page's session. A plain ES module, served as it is (channels/routes/staff.py).
 */

export const API = "/staff/api";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && typeof body.detail === "string" && body.detail) || `The request failed (HTTP ${status}).`);
    this.status = status;
    this.body = body || {};
  }
}

/**
 * api(method, path, body, background) for one page. `csrf()` gives the session's token, `ended()`
 * runs when the session is gone (401), `unreachable` is what to say when the server cannot be
 * reached. `background`: a poll or a live refresh, not a person, so the server does not count it
 * as activity (X-Staff-Background).
 */
export function client({ csrf, ended, unreachable }) {
  return async function api(method, path, body, background = false) {
    const init = { method, credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } };
    if (background) init.headers["X-Staff-Background"] = "1";
    if (method !== "GET") {
      init.headers["Content-Type"] = "application/json";
      const token = csrf();
      if (token) init.headers["X-CSRF-Token"] = token;
      init.body = JSON.stringify(body || {});
    }
    let resp;
    try {
      resp = await fetch(API + path, init);
    } catch (e) {
      throw new ApiError(0, { error: "network", detail: unreachable });
    }
    let data = null;
    if (resp.status !== 204) {
      try {
        data = await resp.json();
      } catch (e) {
        data = null;
      }
    }
    if (resp.status === 401 && path !== "/login") {
      ended();
      throw new ApiError(401, data);
    }
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  };
}
