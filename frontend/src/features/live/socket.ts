// The one WebSocket controller: feeds the fleet store, hands alerts on, keeps its token fresh,
// reconnects with backoff and, on every (re)connection, refetches the latest positions so that
// nothing sent while it was away is missed.
//
// Auth: the token goes in `Sec-WebSocket-Protocol` (`bearer, <token>`, the gateway answering
// `bearer`) so it never lands in a URL or an access log. A gateway that does not speak it
// makes the browser fail the handshake; until a socket has opened, attempts alternate with the
// older `?token=` form, and whichever opened first is kept.
import type { FleetState } from "./fleet";

export type LinkState = "connecting" | "live" | "reconnecting" | "offline";
export type AuthMode = "protocol" | "query";

export const PROTOCOL = "bearer";
/** Failed attempts in a row after which the link counts as offline rather than reconnecting. */
export const OFFLINE_AFTER_FAILURES = 4;
const MAX_BACKOFF_MS = 30_000;
const BASE_BACKOFF_MS = 500;

export interface SocketLike {
  readyState: number;
  protocol: string;
  onopen: ((event: unknown) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface LiveOptions {
  /** ws(s)://host/api/v1/ws — without a query. */
  url: string;
  fleet: FleetState;
  token(): string | null;
  /** A renewed access token after the socket was refused (4401), or null. */
  renewToken(): Promise<string | null>;
  fetchLatest(): Promise<unknown[]>;
  onAlert(alert: unknown): void;
  onState(state: LinkState): void;
  openSocket?: (url: string, protocols: string[]) => SocketLike;
  random?: () => number;
}

const OPEN = 1;

export class LiveController {
  state: LinkState = "connecting";
  authMode: AuthMode = "protocol";
  private socket: SocketLike | null = null;
  private failures = 0;
  private everOpened = false;
  private stopped = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  messages = 0;
  reconnects = 0;

  constructor(private readonly options: LiveOptions) {}

  start(): void {
    this.stopped = false;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onclose = null;
      socket.close(1000, "signed out");
    }
  }

  /** Hand a renewed access token to the open socket so it is not closed at expiry. */
  renew(token: string): void {
    if (this.socket?.readyState === OPEN) {
      this.socket.send(JSON.stringify({ type: "token", token }));
    }
  }

  /** Reconnect now (e.g. the browser came back online). */
  retryNow(): void {
    if (this.stopped || this.socket) return;
    clearTimeout(this.retryTimer);
    this.open();
  }

  private setState(state: LinkState): void {
    if (state === this.state) return;
    this.state = state;
    this.options.onState(state);
  }

  private open(): void {
    const token = this.options.token();
    if (!token) {
      this.setState("offline");
      return;
    }
    const open =
      this.options.openSocket ??
      ((url: string, protocols: string[]) =>
        new WebSocket(url, protocols) as unknown as SocketLike);
    const batched = `${this.options.url}?batch=1`;
    const socket =
      this.authMode === "protocol"
        ? open(batched, [PROTOCOL, token])
        : open(`${batched}&token=${encodeURIComponent(token)}`, []);
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.everOpened = true;
      this.failures = 0;
      this.setState("live");
      void this.refetch();
    };
    socket.onmessage = (event) => this.receive(socket, event.data);
    socket.onerror = () => undefined;
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      if (!opened && !this.everOpened) {
        this.authMode = this.authMode === "protocol" ? "query" : "protocol";
      }
      if (event.code === 4401) {
        void this.options.renewToken().then((fresh) => {
          if (fresh) this.scheduleRetry();
          else this.setState("offline");
        });
        return;
      }
      this.scheduleRetry();
    };
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    this.failures += 1;
    this.reconnects += 1;
    this.setState(this.failures > OFFLINE_AFTER_FAILURES ? "offline" : "reconnecting");
    const random = this.options.random ?? Math.random;
    const ceiling = Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** (this.failures - 1));
    const delay = ceiling / 2 + (random() * ceiling) / 2;
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  private async refetch(): Promise<void> {
    try {
      this.options.fleet.offerSnapshot(await this.options.fetchLatest());
    } catch {
      // The live feed carries on; the next reconnection refetches again.
    }
  }

  private receive(socket: SocketLike, data: unknown): void {
    if (typeof data !== "string") return;
    let message: unknown;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof message !== "object" || message === null) return;
    const { type, data: payload } = message as { type?: unknown; data?: unknown };
    this.messages += 1;
    switch (type) {
      case "position":
        this.options.fleet.offerRaw(payload);
        break;
      case "positions":
        if (Array.isArray(payload)) for (const item of payload) this.options.fleet.offerRaw(item);
        break;
      case "alert":
        this.options.onAlert(payload);
        break;
      case "ping":
        socket.send(JSON.stringify({ type: "pong" }));
        break;
      default:
        break;
    }
  }
}
