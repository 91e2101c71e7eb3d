// Runs the socket controller while someone is signed in.
import { useEffect } from "react";
import { api, apiBase, unwrap } from "../../api/client";
import { renewSession, useSession } from "../auth/session";
import { pushAlert } from "../alerts/store";
import { debug, fleet, useLive } from "./liveStore";
import { LiveController } from "./socket";

function socketUrl(): string {
  const base = new URL(apiBase());
  base.protocol = base.protocol === "https:" ? "wss:" : "ws:";
  base.pathname = "/api/v1/ws";
  base.search = "";
  return base.toString();
}

export function useLiveConnection(): void {
  const signedIn = useSession((s) => s.session !== null);
  const userId = useSession((s) => s.session?.user.id ?? null);

  useEffect(() => {
    if (!signedIn) return;
    const controller = new LiveController({
      url: socketUrl(),
      fleet,
      token: () => useSession.getState().session?.accessToken ?? null,
      renewToken: renewSession,
      fetchLatest: async () =>
        unwrap(await api.GET("/api/v1/positions/latest", {})).items as unknown[],
      onAlert: pushAlert,
      onState: (link) => useLive.setState({ link }),
    });
    useLive.setState({ link: "connecting" });
    controller.start();
    const counter = setInterval(() => (debug.messages = controller.messages), 1000);
    const unsubscribe = useSession.subscribe((state, previous) => {
      const token = state.session?.accessToken;
      if (token && token !== previous.session?.accessToken) controller.renew(token);
    });
    const online = () => controller.retryNow();
    window.addEventListener("online", online);
    return () => {
      clearInterval(counter);
      unsubscribe();
      window.removeEventListener("online", online);
      controller.stop();
      fleet.clear();
      useLive.setState({ link: "offline", selectedKey: null });
    };
  }, [signedIn, userId]);
}
