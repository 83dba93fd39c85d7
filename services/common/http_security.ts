/**
 * The rules of the product's HTTP listeners (the broker's admin API, the
 * analysis dashboard), in one place:
 *
 * - a listener binds to loopback unless it is protected: by a bearer token
 *   (both) or TLS (the dashboard);
 * - without a token, only requests naming a loopback host are answered (a
 *   web page elsewhere cannot reach it through DNS rebinding);
 * - with a token, every request must carry it (compared in constant time).
 *
 * ```ts
 * exposureProblem("0.0.0.0:8090", { token: false, tls: false }); // "a loopback address …"
 * ```
 *
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import { hostOf, isLoopbackHost } from "./net.ts";

/** True when `given` equals `expected` (constant time for equal lengths). */
export function sameSecret(given: string | null | undefined, expected: string): boolean {
  const a = new TextEncoder().encode(given ?? "");
  const b = new TextEncoder().encode(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * What is wrong with listening on `listen` with the given protection, or
 * undefined when it is allowed: a non-loopback address needs a token, or,
 * where TLS is offered (`tls` not undefined), TLS or a token.
 * @param listen `host:port`
 * @param protection whether a token is set, and whether TLS is on (undefined: not offered)
 * @param keys the settings to name in the message, e.g. `{token: "broker.admin_token"}`
 */
export function exposureProblem(
  listen: string,
  protection: { token: boolean; tls?: boolean },
  keys: { token: string; tls?: string } = { token: "a token" },
): string | undefined {
  const host = hostOf(listen);
  if (isLoopbackHost(host) || protection.token || protection.tls) return undefined;
  const needs = protection.tls === undefined || keys.tls === undefined
    ? `${keys.token} is set`
    : `${keys.token} or ${keys.tls} is set`;
  return `a loopback address (127.0.0.1 or [::1]) unless ${needs}`;
}

/** A refused request: the status and the message (what was expected). */
export interface Refusal {
  status: 401 | 403;
  error: string;
}

/**
 * Whether a request may be answered: without a token, only for a loopback
 * `Host`; with one, only with `Authorization: Bearer <token>` (or the
 * token given by `alternative`, e.g. read from a cookie).
 */
export function checkRequestAccess(
  request: Request,
  token: string | undefined,
  alternative?: string | null,
): Refusal | undefined {
  if (token === undefined) {
    const hostHeader = request.headers.get("host") ?? "";
    if (!isLoopbackHost(hostHeader.replace(/:\d+$/, ""))) {
      return {
        status: 403,
        error: `host: expected a loopback address such as 127.0.0.1, found ${
          JSON.stringify(hostHeader)
        }`,
      };
    }
    return undefined;
  }
  if (sameSecret(request.headers.get("authorization"), `Bearer ${token}`)) return undefined;
  if (alternative && sameSecret(alternative, token)) return undefined;
  return { status: 401, error: 'authorization: expected "Bearer <token>"' };
}
