import { describe, expect, it } from "vitest";
import { FleetState, parseFix, statusOf, type Fix } from "./fleet";

function manualFrames() {
  const queued: Array<() => void> = [];
  return {
    schedule: (flush: () => void) => queued.push(flush),
    runFrame: () => queued.splice(0).forEach((f) => f()),
    get waiting() {
      return queued.length;
    },
  };
}

const doc = (vehicle: string, ts: string, lon: number, extra: Record<string, unknown> = {}) => ({
  device_id: `dev-${vehicle}`,
  vehicle_id: vehicle,
  org_id: "org",
  recorded_at: ts,
  lat: 10,
  lon,
  speed_kph: 30,
  ...extra,
});

describe("FleetState", () => {
  it("says which flush applies a latest-positions snapshot", () => {
    const frames = manualFrames();
    const fleet = new FleetState(frames.schedule);
    const snapshots: boolean[] = [];
    fleet.subscribe(({ snapshot }) => snapshots.push(snapshot));
    fleet.offerRaw(doc("a", "2026-01-01T00:00:05Z", 1));
    frames.runFrame();
    fleet.offerSnapshot([doc("a", "2026-01-01T00:00:06Z", 2), doc("b", "2026-01-01T00:00:06Z", 2)]);
    frames.runFrame();
    // A snapshot with nothing newer than what is held changes nothing: no flush, and the next
    // live flush is not taken for a snapshot.
    fleet.offerSnapshot([doc("a", "2026-01-01T00:00:01Z", 0)]);
    frames.runFrame();
    fleet.offerRaw(doc("b", "2026-01-01T00:00:07Z", 3));
    frames.runFrame();
    expect(snapshots).toEqual([false, true, false]);
  });

  it("coalesces any number of messages into one update per frame", () => {
    const frames = manualFrames();
    const fleet = new FleetState(frames.schedule);
    let notified = 0;
    fleet.subscribe(() => (notified += 1));
    for (let i = 0; i < 1000; i += 1) {
      fleet.offerRaw(doc(`v${i % 100}`, new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(), i));
    }
    expect(frames.waiting).toBe(1);
    expect(notified).toBe(0);
    frames.runFrame();
    expect(notified).toBe(1);
    expect(fleet.flushes).toBe(1);
    expect(fleet.fixes.size).toBe(100);
    expect(fleet.fixes.get("v7")?.lon).toBe(907);
    frames.runFrame();
    expect(notified).toBe(1);
  });

  it("never moves a vehicle back for a late fix, whether queued or applied", () => {
    const frames = manualFrames();
    const fleet = new FleetState(frames.schedule);
    expect(fleet.offerRaw(doc("a", "2026-01-01T00:00:10Z", 10))).toBe(true);
    expect(fleet.offerRaw(doc("a", "2026-01-01T00:00:05Z", 5))).toBe(false);
    frames.runFrame();
    expect(fleet.fixes.get("a")?.lon).toBe(10);
    expect(fleet.offerRaw(doc("a", "2026-01-01T00:00:09Z", 9))).toBe(false);
    expect(fleet.offerRaw(doc("a", "2026-01-01T00:00:10Z", 99))).toBe(false);
    expect(frames.waiting).toBe(0);
    expect(fleet.fixes.get("a")?.lon).toBe(10);
    expect(fleet.staleDropped).toBe(3);
    expect(fleet.offerRaw(doc("a", "2026-01-01T00:00:11Z", 11))).toBe(true);
    frames.runFrame();
    expect(fleet.fixes.get("a")?.lon).toBe(11);
  });

  it("tells listeners which vehicles changed", () => {
    const frames = manualFrames();
    const fleet = new FleetState(frames.schedule);
    const seen: string[][] = [];
    fleet.subscribe(({ changed }) => seen.push([...changed].sort()));
    fleet.offerRaw(doc("a", "2026-01-01T00:00:01Z", 1));
    fleet.offerRaw(doc("b", "2026-01-01T00:00:01Z", 1));
    frames.runFrame();
    fleet.offerRaw(doc("b", "2026-01-01T00:00:02Z", 2));
    frames.runFrame();
    expect(seen).toEqual([["a", "b"], ["b"]]);
  });

  it("rejects documents it cannot place", () => {
    expect(parseFix({ device_id: "d", recorded_at: "2026-01-01T00:00:00Z", lat: 1 })).toBeNull();
    expect(parseFix({ device_id: "d", recorded_at: "not a time", lat: 1, lon: 2 })).toBeNull();
    expect(parseFix("x")).toBeNull();
    expect(
      parseFix({
        device_id: "d",
        vehicle_id: null,
        recorded_at: "2026-01-01T00:00:00Z",
        lat: 1,
        lon: 2,
      })?.key,
    ).toBe("d");
  });

  it("derives moving / stopped / offline like the location service", () => {
    const base = parseFix(doc("a", "2026-01-01T00:00:00Z", 1)) as Fix;
    const t = base.recordedAtMs;
    expect(statusOf(base, t + 1000)).toBe("moving");
    expect(statusOf({ ...base, ignition: false }, t)).toBe("stopped");
    expect(statusOf({ ...base, speedKph: 2 }, t)).toBe("stopped");
    expect(statusOf(base, t + 601_000)).toBe("offline");
  });
});
