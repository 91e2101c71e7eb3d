// Geofence geometry: the API's Polygon or Circle, as GeoJSON for the map.
import type { Feature, Polygon } from "geojson";

export const EARTH_RADIUS_M = 6_371_008.8;

export interface CircleGeometry {
  type: "Circle";
  center: [number, number];
  radius_m: number;
}

/** A circle as a polygon of `steps` points (the map draws polygons, not geodesic circles). */
export function circlePolygon(center: [number, number], radiusM: number, steps = 64): Polygon {
  const [lon, lat] = center;
  const latRad = (lat * Math.PI) / 180;
  const ring: [number, number][] = [];
  for (let i = 0; i <= steps; i += 1) {
    const angle = (i / steps) * 2 * Math.PI;
    const dLat = (radiusM * Math.cos(angle)) / EARTH_RADIUS_M;
    const dLon = (radiusM * Math.sin(angle)) / (EARTH_RADIUS_M * Math.cos(latRad));
    ring.push([lon + (dLon * 180) / Math.PI, lat + (dLat * 180) / Math.PI]);
  }
  return { type: "Polygon", coordinates: [ring] };
}

export function geofenceFeature(geofence: {
  id: string;
  name: string;
  colour: string;
  geometry: Record<string, unknown>;
}): Feature<Polygon> | null {
  const g = geofence.geometry;
  let polygon: Polygon | null = null;
  if (g.type === "Polygon" && Array.isArray(g.coordinates)) polygon = g as unknown as Polygon;
  if (g.type === "Circle" && Array.isArray(g.center) && typeof g.radius_m === "number") {
    polygon = circlePolygon(g.center as [number, number], g.radius_m);
  }
  if (!polygon) return null;
  return {
    type: "Feature",
    id: geofence.id,
    geometry: polygon,
    properties: { id: geofence.id, name: geofence.name, colour: geofence.colour || "#3b82f6" },
  };
}
