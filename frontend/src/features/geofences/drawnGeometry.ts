// What terra-draw drew, as the API's geofence geometry: a Polygon, or a Circle from the
// circle mode's polygon (its centre is the mean of the ring, its radius the mode's own).
import type { Polygon } from "geojson";

export type GeofenceGeometry =
  | { type: "Polygon"; coordinates: number[][][] }
  | { type: "Circle"; center: [number, number]; radius_m: number };

export function drawnGeometry(
  mode: string,
  polygon: Polygon,
  properties: Record<string, unknown>,
): GeofenceGeometry | null {
  const ring = polygon.coordinates[0];
  if (!ring || ring.length < 4) return null;
  if (mode === "circle" && typeof properties.radiusKilometers === "number") {
    const vertices = ring.slice(0, -1);
    const lon = vertices.reduce((sum, c) => sum + (c[0] as number), 0) / vertices.length;
    const lat = vertices.reduce((sum, c) => sum + (c[1] as number), 0) / vertices.length;
    return {
      type: "Circle",
      center: [lon, lat],
      radius_m: Math.round(properties.radiusKilometers * 1000),
    };
  }
  return { type: "Polygon", coordinates: polygon.coordinates };
}
