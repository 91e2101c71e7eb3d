import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FleetState } from "./fleet";
import { LiveController, type LinkState, type SocketLike } from "./socket";

class FakeSocket implements SocketLike {
  readyState = 0;
  protocol = "";
  sent: string[] = [];
  closed: number | null = null;
  onopen: SocketLike["onopen"] = null;
  onclose: SocketLike["onclose"] = null;
  onmessage: SocketLike["onmessage"] = null;
  onerror: SocketLike["onerror"] = null;
  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {}
  send(data: string) {
    this.sent.push(data);
  }
  close(code = 1000) {
    this.closed = code;
  }
  accept() {
    this.readyState = 1;
    this.onopen?.({});
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }
  message(body: unknown) {
    this.onmessage?.({ data: JSON.stringify(body) });
  }
}

const fix = (vehicle: string, second: number) => ({
  device_id: `d-${vehicle}`,
  vehicle_id: vehicle,
  recorded_at: new Date(Date.UTC(2026, 0, 1, 0, 0, second)).toISOString(),
  lat: 1,
  lon: second,
});

function setup(latest: () => unknown[] = () => []) {
  const sockets: FakeSocket[] = [];
  const states: LinkState[] = [];
  const alerts: unknown[] = [];
  const fleet = new FleetState((flush) => queueMicrotask(flush));
  let fetches = 0;
  const controller = new LiveController({
    url: "ws://gw/api/v1/ws",
    fleet,
    token: () => "tok",
    renewToken: async () => "tok2",
    fetchLatest: async () => {
      fetches += 1;
      return latest();
    },
    onAlert: (a) => alerts.push(a),
    onState: (s) => states.push(s),
    openSocket: (url, protocols) => {
      const socket = new FakeSocket(url, protocols);
      sockets.push(socket);
      return socket;
    },
    random: () => 1,
  });
  return { controller, sockets, states, alerts, fleet, fetches: () => fetches };
}

const settle = () => vi.advanceTimersByTimeAsync(0);

describe("LiveController", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("sends the token as a subprotocol and asks for batched messages", () => {
    const { controller, sockets } = setup();
    controller.start();
    expect(sockets[0]?.url).toBe("ws://gw/api/v1/ws?batch=1");
    expect(sockets[0]?.protocols).toEqual(["bearer", "tok"]);
  });

  it("falls back to ?token= when the protocol handshake never opens, and keeps what worked", async () => {
    const { controller, sockets } = setup();
    controller.start();
    sockets[0]?.drop();
    await vi.advanceTimersByTimeAsync(1000);
    expect(sockets[1]?.url).toBe("ws://gw/api/v1/ws?batch=1&token=tok");
    expect(sockets[1]?.protocols).toEqual([]);
    sockets[1]?.accept();
    sockets[1]?.drop();
    await vi.advanceTimersByTimeAsync(1000);
    expect(sockets[2]?.url).toContain("token=tok");
  });

  it("applies single and batched positions, hands on alerts, answers pings", async () => {
    const { controller, sockets, alerts, fleet } = setup();
    controller.start();
    sockets[0]?.accept();
    sockets[0]?.message({ type: "position", data: fix("a", 1) });
    sockets[0]?.message({ type: "positions", data: [fix("b", 1), fix("c", 1), fix("a", 0)] });
    sockets[0]?.message({ type: "alert", data: { id: "x" } });
    sockets[0]?.message({ type: "ping", ts: 1 });
    sockets[0]?.onmessage?.({ data: "not json" });
    await settle();
    expect([...fleet.fixes.keys()].sort()).toEqual(["a", "b", "c"]);
    expect(fleet.fixes.get("a")?.lon).toBe(1);
    expect(alerts).toEqual([{ id: "x" }]);
    expect(sockets[0]?.sent).toEqual([JSON.stringify({ type: "pong" })]);
  });

  it("reconnects with growing backoff, reports its state, and refetches latest on reconnect", async () => {
    let snapshot = [fix("a", 1)];
    const { controller, sockets, states, fleet, fetches } = setup(() => snapshot);
    controller.start();
    sockets[0]?.accept();
    await settle();
    expect(fetches()).toBe(1);
    expect(states).toEqual(["live"]);

    sockets[0]?.drop();
    expect(states.at(-1)).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(499);
    expect(sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(sockets).toHaveLength(2);
    sockets[1]?.drop();
    await vi.advanceTimersByTimeAsync(999);
    expect(sockets).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(sockets).toHaveLength(3);

    // While away, vehicle a moved and b appeared: the refetch on reconnection brings both.
    snapshot = [fix("a", 5), fix("b", 5)];
    sockets[2]?.accept();
    await settle();
    expect(fetches()).toBe(2);
    expect(states.at(-1)).toBe("live");
    expect(fleet.fixes.get("a")?.lon).toBe(5);
    expect(fleet.fixes.has("b")).toBe(true);
  });

  it("goes offline after repeated failures and renews the token on 4401", async () => {
    const { controller, sockets, states } = setup();
    controller.start();
    sockets[0]?.accept();
    for (let i = 0; i < 5; i += 1) {
      sockets.at(-1)?.drop();
      await vi.advanceTimersByTimeAsync(60_000);
    }
    expect(states).toContain("offline");
    sockets.at(-1)?.accept();
    expect(states.at(-1)).toBe("live");
    const before = sockets.length;
    sockets.at(-1)?.drop(4401);
    await vi.advanceTimersByTimeAsync(1000);
    expect(sockets.length).toBe(before + 1);
    expect(sockets.at(-1)?.protocols).toEqual(["bearer", "tok"]);
  });

  it("sends a renewed token on the open socket and closes cleanly on stop", () => {
    const { controller, sockets } = setup();
    controller.start();
    sockets[0]?.accept();
    controller.renew("fresh");
    expect(sockets[0]?.sent).toEqual([JSON.stringify({ type: "token", token: "fresh" })]);
    controller.stop();
    expect(sockets[0]?.closed).toBe(1000);
  });
});
