// The live fleet: the newest fix of every vehicle, fed by the WebSocket and the latest-
// positions snapshot. Updates are queued and applied at most once per animation frame, so the
// map's source is rebuilt once a frame however many messages arrive; a fix older than the one
// already held (late, redelivered, or from a snapshot taken before it) never moves a vehicle
// back.

export type VehicleStatus = "moving" | "stopped" | "offline";

export interface Fix {
  /** The vehicle id, or the device id of a device on no vehicle. */
  key: string;
  deviceId: string;
  vehicleId: string | null;
  recordedAtMs: number;
  lat: number;
  lon: number;
  speedKph: number | null;
  headingDeg: number | null;
  batteryPct: number | null;
  ignition: boolean | null;
  odometerKm: number | null;
}

/** The location service's defaults (moving_speed_kph, offline_after_s). */
export const MOVING_SPEED_KPH = 5;
export const OFFLINE_AFTER_MS = 600_000;

export function statusOf(fix: Fix, nowMs: number): VehicleStatus {
  if (nowMs - fix.recordedAtMs > OFFLINE_AFTER_MS) return "offline";
  const moving = fix.speedKph !== null && fix.speedKph >= MOVING_SPEED_KPH;
  return moving && fix.ignition !== false ? "moving" : "stopped";
}

function num(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** A position document (live message or /positions/latest item) as a Fix; null if unusable. */
export function parseFix(raw: unknown): Fix | null {
  if (typeof raw !== "object" || raw === null) return null;
  const doc = raw as Record<string, unknown>;
  const lat = num(doc.lat);
  const lon = num(doc.lon);
  const deviceId = typeof doc.device_id === "string" ? doc.device_id : null;
  const recordedAtMs = typeof doc.recorded_at === "string" ? Date.parse(doc.recorded_at) : NaN;
  if (lat === null || lon === null || deviceId === null || Number.isNaN(recordedAtMs)) return null;
  const vehicleId = typeof doc.vehicle_id === "string" ? doc.vehicle_id : null;
  return {
    key: vehicleId ?? deviceId,
    deviceId,
    vehicleId,
    recordedAtMs,
    lat,
    lon,
    speedKph: num(doc.speed_kph),
    headingDeg: num(doc.heading_deg),
    batteryPct: num(doc.battery_pct),
    ignition: typeof doc.ignition === "boolean" ? doc.ignition : null,
    odometerKm: num(doc.odometer_km),
  };
}

export type Scheduler = (flush: () => void) => void;

export const animationFrame: Scheduler = (flush) => {
  requestAnimationFrame(() => flush());
};

export interface Flushed {
  /** The keys whose fix changed in this flush. */
  changed: ReadonlySet<string>;
  version: number;
  /** This flush applies a latest-positions snapshot: every vehicle known is now held, and
   * views that update at most once a second show it at once rather than at their next turn
   * (at sign-in the snapshot lands just after the first live messages were shown). */
  snapshot: boolean;
}

export class FleetState {
  readonly fixes = new Map<string, Fix>();
  /** Fixes waiting for the next frame, newest per vehicle. */
  private readonly pending = new Map<string, Fix>();
  private scheduled = false;
  private snapshotPending = false;
  private listeners = new Set<(flushed: Flushed) => void>();
  version = 0;
  flushes = 0;
  /** Fixes dropped because a newer one was already held. */
  staleDropped = 0;

  constructor(private readonly schedule: Scheduler = animationFrame) {}

  /** Queue a fix; true when it is newer than everything held for its vehicle. */
  offer(fix: Fix): boolean {
    const held = this.pending.get(fix.key) ?? this.fixes.get(fix.key);
    if (held && held.recordedAtMs >= fix.recordedAtMs) {
      this.staleDropped += 1;
      return false;
    }
    this.pending.set(fix.key, fix);
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(() => this.flush());
    }
    return true;
  }

  offerRaw(raw: unknown): boolean {
    const fix = parseFix(raw);
    return fix !== null && this.offer(fix);
  }

  /** Queue a latest-positions snapshot (GET /positions/latest items). */
  offerSnapshot(raws: readonly unknown[]): void {
    let queued = false;
    for (const raw of raws) queued = this.offerRaw(raw) || queued;
    if (queued) this.snapshotPending = true;
  }

  /** Apply everything queued: one change notification for all of it. */
  flush(): void {
    this.scheduled = false;
    if (this.pending.size === 0) {
      this.snapshotPending = false;
      return;
    }
    const changed = new Set<string>();
    for (const [key, fix] of this.pending) {
      this.fixes.set(key, fix);
      changed.add(key);
    }
    this.pending.clear();
    this.version += 1;
    this.flushes += 1;
    const flushed = { changed, version: this.version, snapshot: this.snapshotPending };
    this.snapshotPending = false;
    for (const listener of this.listeners) listener(flushed);
  }

  subscribe(listener: (flushed: Flushed) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  clear(): void {
    this.fixes.clear();
    this.pending.clear();
    this.version += 1;
    for (const listener of this.listeners) {
      listener({ changed: new Set(), version: this.version, snapshot: false });
    }
  }
}
