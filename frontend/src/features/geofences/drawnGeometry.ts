// Between terra-draw's features and the API's geofence geometry. Terra-draw draws and edits a
// circle as a polygon (a circle on the Web Mercator map), and resizing it in the select mode
// changes only its ring, so a circle is always read back from its ring: the centre is the
// mean of the vertices in Web Mercator, the radius their mean great-circle distance from it.
import type { Feature, Polygon, Position } from "geojson";
import { circlePolygon, EARTH_RADIUS_M } from "./geometry";

export type GeofenceGeometry =
  | { type: "Polygon"; coordinates: number[][][] }
  | { type: "Circle"; center: [number, number]; radius_m: number };

export type DrawMode = "polygon" | "circle";

// Terra-draw refuses coordinates with more decimals than its precision (9 by default).
const DECIMALS = 9;
const DEG = Math.PI / 180;

export function drawnGeometry(mode: string, polygon: Polygon): GeofenceGeometry | null {
  const ring = polygon.coordinates[0];
  if (!ring || ring.length < 4 || polygon.coordinates.length !== 1) return null;
  if (new Set(ring.slice(0, -1).map((c) => `${c[0]},${c[1]}`)).size < 3) return null;
  if (mode === "circle") return ringCircle(ring.slice(0, -1));
  return { type: "Polygon", coordinates: polygon.coordinates };
}

function ringCircle(vertices: Position[]): GeofenceGeometry {
  const mercatorY = (lat: number) => Math.log(Math.tan(Math.PI / 4 + (lat * DEG) / 2));
  const lon = vertices.reduce((sum, c) => sum + (c[0] as number), 0) / vertices.length;
  const y = vertices.reduce((sum, c) => sum + mercatorY(c[1] as number), 0) / vertices.length;
  const lat = (2 * Math.atan(Math.exp(y)) - Math.PI / 2) / DEG;
  const center: [number, number] = [lon, lat];
  const radius =
    vertices.reduce((sum, c) => sum + haversineM(center, c as [number, number]), 0) /
    vertices.length;
  return { type: "Circle", center, radius_m: Math.round(radius) };
}

function haversineM([lon1, lat1]: [number, number], [lon2, lat2]: [number, number]): number {
  const a =
    Math.sin(((lat2 - lat1) * DEG) / 2) ** 2 +
    Math.cos(lat1 * DEG) * Math.cos(lat2 * DEG) * Math.sin(((lon2 - lon1) * DEG) / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(a)));
}

/** A saved geofence as a feature terra-draw can load and edit, or null when it cannot be
 * edited on the map (a polygon with holes). */
export function drawFeature(
  geometry: Record<string, unknown>,
): Feature<Polygon, { mode: DrawMode }> | null {
  let mode: DrawMode;
  let ring: Position[];
  if (geometry.type === "Circle" && Array.isArray(geometry.center)) {
    mode = "circle";
    const circle = circlePolygon(geometry.center as [number, number], Number(geometry.radius_m));
    ring = circle.coordinates[0] as Position[];
  } else if (geometry.type === "Polygon" && Array.isArray(geometry.coordinates)) {
    const rings = geometry.coordinates as Position[][];
    if (rings.length !== 1) return null;
    mode = "polygon";
    ring = rings[0] as Position[];
  } else {
    return null;
  }
  const rounded = ring.slice(0, -1).map((c) => c.map((v) => Number(v.toFixed(DECIMALS))));
  if (rounded.length < 3) return null;
  return {
    type: "Feature",
    geometry: { type: "Polygon", coordinates: [[...rounded, rounded[0] as Position]] },
    properties: { mode },
  };
}
