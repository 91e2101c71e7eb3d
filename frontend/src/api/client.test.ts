import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError, problemFrom } from "../lib/problem";
import { parseConfig } from "../config";
import { authFetch, setAuthHooks } from "./client";

afterEach(() => vi.unstubAllGlobals());

function stubFetch(statuses: number[]) {
  const seen: Array<{ url: string; auth: string | null; body: string }> = [];
  vi.stubGlobal(
    "fetch",
    vi.fn(async (request: Request) => {
      seen.push({
        url: request.url,
        auth: request.headers.get("Authorization"),
        body: await request.text(),
      });
      return new Response(null, { status: statuses[seen.length - 1] ?? 200 });
    }),
  );
  return seen;
}

describe("authFetch", () => {
  it("sends the access token, and on 401 renews once and retries the same request", async () => {
    const seen = stubFetch([401, 200]);
    let token = "old";
    setAuthHooks({ accessToken: () => token, refresh: async () => (token = "new") });
    const response = await authFetch(
      new Request("http://gw/api/v1/geofences", { method: "POST", body: '{"a":1}' }),
    );
    expect(response.status).toBe(200);
    expect(seen.map((s) => s.auth)).toEqual(["Bearer old", "Bearer new"]);
    expect(seen[1]?.body).toBe('{"a":1}');
  });

  it("hands the 401 back when the session cannot be renewed", async () => {
    const seen = stubFetch([401]);
    setAuthHooks({ accessToken: () => "old", refresh: async () => null });
    expect((await authFetch(new Request("http://gw/api/v1/vehicles"))).status).toBe(401);
    expect(seen).toHaveLength(1);
  });

  it("never renews on a failed sign-in", async () => {
    const seen = stubFetch([401]);
    const refresh = vi.fn(async () => "new");
    setAuthHooks({ accessToken: () => null, refresh });
    expect(
      (await authFetch(new Request("http://gw/api/v1/auth/login", { method: "POST" }))).status,
    ).toBe(401);
    expect(refresh).not.toHaveBeenCalled();
    expect(seen[0]?.auth).toBeNull();
  });
});

describe("problem+json and runtime config", () => {
  it("takes title and detail from a problem document", () => {
    const error = problemFrom(
      409,
      { type: "about:blank", title: "Conflict", status: 409, detail: "plate taken" },
      "x",
    );
    expect(error).toBeInstanceOf(ApiError);
    expect([error.status, error.title, error.detail]).toEqual([409, "Conflict", "plate taken"]);
    expect(problemFrom(502, "<html>", "Bad Gateway").title).toBe("Bad Gateway");
  });

  it("reads only well-formed runtime settings", () => {
    expect(
      parseConfig({ mapStyleUrl: " https://x/style.json ", apiBaseUrl: "https://api/" }),
    ).toEqual({
      mapStyleUrl: "https://x/style.json",
      apiBaseUrl: "https://api",
    });
    expect(parseConfig({ mapStyleUrl: "", apiBaseUrl: 5 })).toEqual({});
    expect(parseConfig(null)).toEqual({});
  });
});
