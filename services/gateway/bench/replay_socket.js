// The dashboard bench's local replay of the live feed (dashboard.py --feed replay): an init
// script that stands in for `WebSocket` on `/api/v1/ws`, so that a page is measured alone,
// without the gateway, the publisher and the network stack taking the same two cores.
//
// It delivers what the gateway would send at the same rate: with `?batch=1`,
// `{"type":"positions","data":[...]}` of `batchMax` positions (or what gathered in `windowMs`),
// else one `{"type":"position","data":{...}}` per position; a `{"type": "ping"}` every
// `pingMs`. Positions are spelled as live_batch.py's position_message spells them (the
// location service's spelling). A Worker makes and serialises the messages, so the page's
// main thread pays only what a socket message costs it: one MessageEvent task per message and
// its own JSON.parse.
//
// A page that cannot keep up gets no more than one second of the feed queued for it: past
// that, positions are skipped (counted) rather than queued without bound, as a socket whose
// reader stalls would stop the sender. Counters: window.__replay.
(() => {
  const config = __REPLAY_CONFIG__;
  const RealWebSocket = window.WebSocket;

  const worker = () => {
    let delivered = 0;
    let deliveredPositions = 0;
    let skipped = 0;
    // Positions in each posted message the page has not taken yet, oldest first.
    const unread = [];
    onmessage = (event) => {
      if (event.data.delivered === undefined) {
        feed(event.data);
        return;
      }
      for (; delivered < event.data.delivered; delivered += 1) {
        deliveredPositions += unread.shift();
      }
    };
    const feed = (c) => {
      const heads = c.ids.map(
        (id) =>
          `{"device_id":"${id}","vehicle_id":"${id}","org_id":"${c.orgId}","recorded_at":"`,
      );
      const rest =
        ',"speed_kph":42.5,"heading_deg":270.0,"altitude_m":null,"accuracy_m":4.5,' +
        '"battery_pct":87,"ignition":true,"odometer_km":null,"attrs":{}}';
      // One second of the feed's messages may wait for the page; more is skipped.
      const backlogMax = c.batch ? Math.ceil(c.rate / c.batchMax) : c.rate;
      const started = performance.now();
      let made = 0;
      let posted = 0;
      let pending = [];
      let pendingSince = 0;
      let nextPing = started + c.pingMs;
      let nextStats = started;
      const post = (text, positions) => {
        postMessage(text);
        unread.push(positions);
        posted += 1;
      };
      const flush = () => {
        if (pending.length === 0) return;
        post(
          `{"type":"positions","data":[${pending.join(",")}]}`,
          pending.length,
        );
        pending = [];
      };
      const tick = () => {
        const now = performance.now();
        const due = Math.floor(((now - started) / 1000) * c.rate);
        // recorded_at to the second, as time.strftime("%Y-%m-%dT%H:%M:%S.000000Z") spells it.
        const stamp = new Date().toISOString().slice(0, 19) + ".000000Z";
        for (; made < due; made += 1) {
          if (posted - delivered >= backlogMax) {
            skipped += 1;
            continue;
          }
          const index = made % c.ids.length;
          const step = Math.floor(made / c.ids.length);
          const lat = 10.5 + Math.floor(index / 100) * 0.005;
          const lon = 106.4 + (index % 100) * 0.005 + step * 1e-4;
          const position = `${heads[index]}${stamp}","lat":${lat},"lon":${lon}${rest}`;
          if (!c.batch) {
            post(`{"type":"position","data":${position}}`, 1);
            continue;
          }
          if (pending.length === 0) pendingSince = now;
          pending.push(position);
          if (pending.length >= c.batchMax) flush();
        }
        if (c.batch && pending.length > 0 && now - pendingSince >= c.windowMs)
          flush();
        if (now >= nextPing) {
          post(`{"type": "ping", "ts": ${Math.floor(Date.now() / 1000)}}`, 0);
          nextPing += c.pingMs;
        }
        if (now >= nextStats) {
          postMessage({ made, skipped, deliveredPositions });
          nextStats += 250;
        }
        setTimeout(tick, c.tickMs);
      };
      tick();
    };
  };
  const workerUrl = URL.createObjectURL(
    new Blob([`(${worker})()`], { type: "text/javascript" }),
  );

  const counters = {
    sockets: 0,
    openedAt: null,
    /** Messages the page was handed; positions in them (to 250 ms); positions made, skipped. */
    messages: 0,
    positions: 0,
    made: 0,
    skipped: 0,
    /** What the page sent, by type (pongs, token renewals). */
    sent: {},
  };
  window.__replay = counters;

  class ReplaySocket extends EventTarget {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;

    constructor(url, protocols) {
      super();
      this.url = url;
      this.readyState = 0;
      this.protocol = "";
      this.extensions = "";
      this.binaryType = "blob";
      this.bufferedAmount = 0;
      this.onopen = this.onclose = this.onmessage = this.onerror = null;
      const offered =
        typeof protocols === "string" ? [protocols] : [...(protocols ?? [])];
      const batch = ["1", "true"].includes(
        new URL(url).searchParams.get("batch") ?? "",
      );
      counters.sockets += 1;
      this.worker = new Worker(workerUrl);
      this.worker.onmessage = (event) => this.receive(event.data);
      // The gateway accepts, then answers `bearer` if it was offered.
      setTimeout(() => {
        if (this.readyState !== 0) return;
        this.readyState = 1;
        this.protocol = offered.includes("bearer") ? "bearer" : "";
        counters.openedAt ??= performance.now();
        this.fire("open", new Event("open"));
        this.worker.postMessage({ ...config, batch });
        this.reporter = setInterval(
          () => this.worker.postMessage({ delivered: this.delivered }),
          50,
        );
      }, 0);
      this.delivered = 0;
    }

    fire(type, event) {
      this.dispatchEvent(event);
      this[`on${type}`]?.call(this, event);
    }

    receive(data) {
      if (this.readyState !== 1) return;
      if (typeof data !== "string") {
        counters.made = data.made;
        counters.skipped = data.skipped;
        counters.positions = data.deliveredPositions;
        return;
      }
      this.delivered += 1;
      counters.messages += 1;
      this.fire("message", new MessageEvent("message", { data }));
    }

    send(text) {
      if (this.readyState !== 1)
        throw new DOMException("not open", "InvalidStateError");
      const message = JSON.parse(text);
      counters.sent[message.type] = (counters.sent[message.type] ?? 0) + 1;
      if (message.type === "token") {
        const expires = Math.floor(Date.now() / 1000) + 900;
        const data = `{"type": "token_accepted", "expires_at": ${expires}}`;
        setTimeout(
          () => this.fire("message", new MessageEvent("message", { data })),
          0,
        );
      }
    }

    close(code = 1000, reason = "") {
      if (this.readyState >= 2) return;
      this.readyState = 3;
      this.worker.terminate();
      clearInterval(this.reporter);
      setTimeout(
        () =>
          this.fire(
            "close",
            new CloseEvent("close", { code, reason, wasClean: true }),
          ),
        0,
      );
    }
  }

  window.WebSocket = new Proxy(RealWebSocket, {
    construct(target, args) {
      const url = new URL(args[0], location.href);
      if (url.pathname !== "/api/v1/ws") return Reflect.construct(target, args);
      url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
      return new ReplaySocket(url.toString(), args[1]);
    },
  });
})();
