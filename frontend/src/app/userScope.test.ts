import { afterEach, describe, expect, it } from "vitest";
import type { AlertOut } from "../api/client";
import { useAlertFeed } from "../features/alerts/store";
import { type Session, useSession } from "../features/auth/session";
import { queryClient } from "./queryClient";
import { scopeToUser } from "./userScope";

const session = (userId: string, accessToken = "a"): Session =>
  ({
    accessToken,
    refreshToken: "r",
    expiresAtMs: Date.now() + 900_000,
    user: { id: userId },
    org: {},
  }) as Session;

function holdSomething() {
  queryClient.setQueryData(["vehicles"], [{ id: "v-of-the-last-user" }]);
  useAlertFeed.setState({ toasts: [{ id: "alert-1", type: "overspeed" } as AlertOut], unread: 1 });
}
const held = () => [
  queryClient.getQueryData(["vehicles"]) !== undefined,
  useAlertFeed.getState().unread,
];

describe("the page's state is one user's", () => {
  const stop = scopeToUser();
  afterEach(() => useSession.setState({ session: null }));

  it("keeps it while the same user's token is renewed", () => {
    useSession.setState({ session: session("u-ann") });
    holdSomething();
    useSession.setState({ session: session("u-ann", "renewed") });
    expect(held()).toEqual([true, 1]);
  });

  it("drops it when the user signs out, or another one signs in", () => {
    useSession.setState({ session: session("u-ann") });
    holdSomething();
    useSession.setState({ session: null });
    expect(held()).toEqual([false, 0]);
    expect(useAlertFeed.getState().toasts).toEqual([]);

    useSession.setState({ session: session("u-ann") });
    holdSomething();
    useSession.setState({ session: session("u-bao") });
    expect(held()).toEqual([false, 0]);
    stop();
  });
});
