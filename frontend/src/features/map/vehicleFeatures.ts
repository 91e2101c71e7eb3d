// The vehicles as GeoJSON for the map's sources, and the smoothing between fixes.
import type { Feature, FeatureCollection, Point } from "geojson";
import { statusOf, type Fix, type VehicleStatus } from "../live/fleet";

export const STATUS_COLOURS: Record<VehicleStatus, string> = {
  moving: "#1a9850",
  stopped: "#e08214",
  offline: "#7f8c8d",
};

export interface VehicleProps {
  key: string;
  name: string;
  status: VehicleStatus;
  heading: number;
  hasHeading: boolean;
}

export type VehicleCollection = FeatureCollection<Point, VehicleProps>;

/** Where a vehicle is drawn: a glide from its previous fix to the current one. */
export interface Glide {
  fromLon: number;
  fromLat: number;
  toLon: number;
  toLat: number;
  startMs: number;
}

export const GLIDE_MS = 1000;

/** Above this many vehicles, fixes jump instead of gliding (a glide re-sends every frame). */
export const GLIDE_LIMIT = 2000;
/** Above GLIDE_LIMIT vehicles the source is re-sent at most this often: re-sending 10,000
 * features every frame would keep the main thread busy, and fixes come once a second anyway
 * (so each vehicle still moves on every fix). Each re-send costs several map frames (one per
 * reloaded tile), which under software WebGL dominate the main thread. */
export const BIG_FLEET_DRAW_INTERVAL_MS = 1000;

/** How long to wait before the next source update: nothing for a small fleet (it glides, one
 * update a frame), and for a big one until BIG_FLEET_DRAW_INTERVAL_MS after the last update. */
export function drawDelayMs(vehicles: number, lastDrawMs: number, nowMs: number): number {
  if (vehicles <= GLIDE_LIMIT) return 0;
  return Math.max(0, lastDrawMs + BIG_FLEET_DRAW_INTERVAL_MS - nowMs);
}

export function glidePosition(glide: Glide, nowMs: number): [number, number] {
  const t = Math.min(1, Math.max(0, (nowMs - glide.startMs) / GLIDE_MS));
  // Ease-out: most of the move early, so a vehicle is near its true place soon after a fix.
  const eased = 1 - (1 - t) * (1 - t);
  return [
    glide.fromLon + (glide.toLon - glide.fromLon) * eased,
    glide.fromLat + (glide.toLat - glide.fromLat) * eased,
  ];
}

export function vehicleFeature(
  fix: Fix,
  name: string,
  nowMs: number,
  coordinates: [number, number] = [fix.lon, fix.lat],
): Feature<Point, VehicleProps> {
  return {
    type: "Feature",
    id: fix.key,
    geometry: { type: "Point", coordinates },
    properties: {
      key: fix.key,
      name,
      status: statusOf(fix, nowMs),
      heading: fix.headingDeg ?? 0,
      hasHeading: fix.headingDeg !== null,
    },
  };
}
