// The typed API client (openapi-fetch over the generated schema). Every request carries the
// session's access token; a 401 refreshes the session once and retries, and when that fails
// the session ends, which shows the sign-in form over the page the user was on.
import createClient from "openapi-fetch";
import { config } from "../config";
import { problemFrom } from "../lib/problem";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type LatestPosition = Schemas["LatestPosition"];
export type VehicleOut = Schemas["VehicleOut"];
export type AlertOut = Schemas["AlertOut"];
export type UserOut = Schemas["UserOut"];
export type TokenOut = Schemas["TokenOut"];

export interface AuthHooks {
  accessToken(): string | null;
  /** A fresh access token, or null when the session cannot be renewed. */
  refresh(): Promise<string | null>;
}

let hooks: AuthHooks = { accessToken: () => null, refresh: async () => null };

export function setAuthHooks(next: AuthHooks): void {
  hooks = next;
}

function isAuthEndpoint(url: string): boolean {
  return /\/api\/v1\/auth\/(login|register|refresh|firebase)$/.test(new URL(url).pathname);
}

export async function authFetch(request: Request): Promise<Response> {
  const retry = request.clone();
  const token = hooks.accessToken();
  if (token && !request.headers.has("Authorization")) {
    request.headers.set("Authorization", `Bearer ${token}`);
  }
  const response = await fetch(request);
  if (response.status !== 401 || isAuthEndpoint(request.url)) return response;
  const fresh = await hooks.refresh();
  if (!fresh) return response;
  retry.headers.set("Authorization", `Bearer ${fresh}`);
  return fetch(retry);
}

export function apiBase(): string {
  return config().apiBaseUrl || window.location.origin;
}

export const api = createClient<paths>({
  baseUrl: "",
  fetch: (request) => authFetch(request),
});

api.use({
  onRequest({ request }) {
    // The base URL is runtime configuration, known only after start-up.
    const base = config().apiBaseUrl;
    if (!base) return undefined;
    const url = new URL(request.url);
    return new Request(base + url.pathname + url.search, request);
  },
});

/** The data of an openapi-fetch result, or the problem+json error thrown. */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.response.ok && result.data !== undefined) return result.data;
  if (result.response.ok) return undefined as T;
  throw problemFrom(result.response.status, result.error, result.response.statusText || "Error");
}

/** A raw download through the same auth (exports: GPX, CSV, GeoJSON). */
export async function download(path: string, filename: string): Promise<void> {
  const response = await authFetch(new Request(new URL(path, apiBase())));
  if (!response.ok) {
    let body: unknown = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    throw problemFrom(response.status, body, response.statusText || "Error");
  }
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
