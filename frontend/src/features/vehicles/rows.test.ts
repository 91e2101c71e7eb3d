import { describe, expect, it } from "vitest";
import type { VehicleOut } from "../../api/client";
import type { Fix } from "../live/fleet";
import { buildRows, countByStatus, filterRows } from "./rows";

const vehicle = (id: string, name: string, plate: string, group: string | null): VehicleOut =>
  ({ id, name, plate, group }) as VehicleOut;

const now = Date.UTC(2026, 0, 1, 12);
const fix = (key: string, speedKph: number, ageMs = 0): Fix => ({
  key,
  deviceId: `dev-${key}`,
  vehicleId: key,
  recordedAtMs: now - ageMs,
  lat: 0,
  lon: 0,
  speedKph,
  headingDeg: null,
  batteryPct: null,
  ignition: null,
  odometerKm: null,
});

describe("vehicle rows", () => {
  const vehicles = [
    vehicle("a", "Truck 1", "51A-123", "north"),
    vehicle("b", "Van 2", "30B-999", "south"),
    vehicle("c", "Bus", "X", null),
  ];
  const fixes = new Map([
    ["a", fix("a", 40)],
    ["b", fix("b", 0)],
    ["z", fix("z", 0, 3_600_000)],
  ]);
  const rows = buildRows(vehicles, fixes, now);

  it("lists every vehicle, with or without a fix, and orphan fixes", () => {
    expect(rows.map((r) => [r.key, r.status])).toEqual([
      ["c", "nofix"],
      ["a", "moving"],
      ["b", "stopped"],
      ["z", "offline"],
    ]);
    expect(countByStatus(rows)).toEqual({ moving: 1, stopped: 1, offline: 1, nofix: 1 });
  });

  it("searches name, plate and device, and filters by status and group", () => {
    expect(filterRows(rows, "truck", "all", "").map((r) => r.key)).toEqual(["a"]);
    expect(filterRows(rows, "30b", "all", "").map((r) => r.key)).toEqual(["b"]);
    expect(filterRows(rows, "dev-z", "all", "").map((r) => r.key)).toEqual(["z"]);
    expect(filterRows(rows, "", "moving", "").map((r) => r.key)).toEqual(["a"]);
    expect(filterRows(rows, "", "all", "south").map((r) => r.key)).toEqual(["b"]);
  });
});
