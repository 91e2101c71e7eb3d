// The vehicle list's rows: every known vehicle (with or without a fix), searched and filtered.
import type { VehicleOut } from "../../api/client";
import { statusOf, type Fix, type VehicleStatus } from "../live/fleet";

export type StatusFilter = VehicleStatus | "all" | "nofix";

export interface Row {
  key: string;
  name: string;
  plate: string;
  group: string | null;
  status: VehicleStatus | "nofix";
  fix: Fix | null;
}

export function buildRows(
  vehicles: readonly VehicleOut[],
  fixes: ReadonlyMap<string, Fix>,
  nowMs: number,
): Row[] {
  const rows: Row[] = [];
  const seen = new Set<string>();
  for (const v of vehicles) {
    const fix = fixes.get(v.id) ?? null;
    seen.add(v.id);
    rows.push({
      key: v.id,
      name: v.name,
      plate: v.plate,
      group: v.group ?? null,
      status: fix ? statusOf(fix, nowMs) : "nofix",
      fix,
    });
  }
  // A device on no vehicle (or a vehicle created since the list was loaded) still shows.
  for (const fix of fixes.values()) {
    if (seen.has(fix.key)) continue;
    rows.push({
      key: fix.key,
      name: fix.key.slice(0, 8),
      plate: "",
      group: null,
      status: statusOf(fix, nowMs),
      fix,
    });
  }
  rows.sort((a, b) => a.name.localeCompare(b.name));
  return rows;
}

export function filterRows(
  rows: readonly Row[],
  search: string,
  status: StatusFilter,
  group: string,
): Row[] {
  const needle = search.trim().toLowerCase();
  return rows.filter(
    (r) =>
      (status === "all" || r.status === status) &&
      (group === "" || r.group === group) &&
      (needle === "" ||
        r.name.toLowerCase().includes(needle) ||
        r.plate.toLowerCase().includes(needle) ||
        (r.fix?.deviceId.toLowerCase().includes(needle) ?? false)),
  );
}

export function countByStatus(rows: readonly Row[]): Record<VehicleStatus | "nofix", number> {
  const counts = { moving: 0, stopped: 0, offline: 0, nofix: 0 };
  for (const r of rows) counts[r.status] += 1;
  return counts;
}
