// History replay: where the vehicle was at any moment (interpolated between fixes), the speed
// colour scale of the route, and the replay clock's rates.
import type { Feature, FeatureCollection, LineString, Point } from "geojson";

export interface TrackPoint {
  tMs: number;
  lat: number;
  lon: number;
  speedKph: number | null;
  headingDeg: number | null;
}

/** The location service's default `max_history_days`: the longest range of raw positions (what
 * the exports hold); longer ranges are refused with 422. */
export const MAX_RAW_DAYS = 31;
/** Its default `max_report_days`: the longest range of history with `max_points` (sampled
 * hourly past `MAX_RAW_DAYS`), trips, stops and the summary report. */
export const MAX_ROLLUP_DAYS = 366;
/** Replay rates: ×N replays N minutes of route per second of wall time. */
export const RATES = [1, 2, 5, 10, 20] as const;
export const ROUTE_MS_PER_SECOND_AT_X1 = 60_000;

export function parseTrack(raw: unknown): TrackPoint[] {
  const points = (raw as { points?: unknown })?.points;
  if (!Array.isArray(points)) return [];
  const out: TrackPoint[] = [];
  for (const p of points as Array<Record<string, unknown>>) {
    const tMs = typeof p.recorded_at === "string" ? Date.parse(p.recorded_at) : NaN;
    if (Number.isNaN(tMs) || typeof p.lat !== "number" || typeof p.lon !== "number") continue;
    out.push({
      tMs,
      lat: p.lat,
      lon: p.lon,
      speedKph: typeof p.speed_kph === "number" ? p.speed_kph : null,
      headingDeg: typeof p.heading_deg === "number" ? p.heading_deg : null,
    });
  }
  return out.sort((a, b) => a.tMs - b.tMs);
}

/** The index of the last point at or before tMs (0 before the first). */
export function indexAt(points: readonly TrackPoint[], tMs: number): number {
  let lo = 0;
  let hi = points.length - 1;
  if (hi < 0) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((points[mid] as TrackPoint).tMs <= tMs) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function bearingDeg(a: TrackPoint, b: TrackPoint): number {
  const toRad = Math.PI / 180;
  const y = Math.sin((b.lon - a.lon) * toRad) * Math.cos(b.lat * toRad);
  const x =
    Math.cos(a.lat * toRad) * Math.sin(b.lat * toRad) -
    Math.sin(a.lat * toRad) * Math.cos(b.lat * toRad) * Math.cos((b.lon - a.lon) * toRad);
  return (Math.atan2(y, x) / toRad + 360) % 360;
}

/** Where the vehicle was at tMs: linear between the fixes around it, clamped to the track. */
export function positionAt(points: readonly TrackPoint[], tMs: number): TrackPoint | null {
  if (points.length === 0) return null;
  const first = points[0] as TrackPoint;
  const last = points[points.length - 1] as TrackPoint;
  if (tMs <= first.tMs) return first;
  if (tMs >= last.tMs) return last;
  const i = indexAt(points, tMs);
  const a = points[i] as TrackPoint;
  const b = points[i + 1] as TrackPoint;
  const f = b.tMs === a.tMs ? 0 : (tMs - a.tMs) / (b.tMs - a.tMs);
  const speed =
    a.speedKph !== null && b.speedKph !== null
      ? a.speedKph + (b.speedKph - a.speedKph) * f
      : a.speedKph;
  const moved = a.lat !== b.lat || a.lon !== b.lon;
  return {
    tMs,
    lat: a.lat + (b.lat - a.lat) * f,
    lon: a.lon + (b.lon - a.lon) * f,
    speedKph: speed,
    headingDeg: moved ? bearingDeg(a, b) : a.headingDeg,
  };
}

/** Speed colour stops, km/h → colour: standing grey-blue, through green and yellow, to red. */
export const SPEED_STOPS: ReadonlyArray<readonly [number, [number, number, number]]> = [
  [0, [69, 117, 180]],
  [30, [26, 152, 80]],
  [60, [254, 224, 76]],
  [90, [244, 109, 67]],
  [120, [165, 0, 38]],
];

const hex = (n: number) => Math.round(n).toString(16).padStart(2, "0");

export function speedColour(kph: number | null): string {
  if (kph === null || !Number.isFinite(kph)) return "#888888";
  const stops = SPEED_STOPS;
  const firstStop = stops[0] as (typeof stops)[number];
  const lastStop = stops[stops.length - 1] as (typeof stops)[number];
  if (kph <= firstStop[0]) return `#${firstStop[1].map(hex).join("")}`;
  if (kph >= lastStop[0]) return `#${lastStop[1].map(hex).join("")}`;
  for (let i = 1; i < stops.length; i += 1) {
    const [hiKph, hiRgb] = stops[i] as (typeof stops)[number];
    const [loKph, loRgb] = stops[i - 1] as (typeof stops)[number];
    if (kph <= hiKph) {
      const f = (kph - loKph) / (hiKph - loKph);
      return `#${loRgb.map((c, j) => hex(c + ((hiRgb[j] as number) - c) * f)).join("")}`;
    }
  }
  return `#${lastStop[1].map(hex).join("")}`;
}

/** The route as segments coloured by their speed (the mean of their two ends). */
export function routeSegments(points: readonly TrackPoint[]): FeatureCollection<LineString> {
  const features: Feature<LineString>[] = [];
  for (let i = 1; i < points.length; i += 1) {
    const a = points[i - 1] as TrackPoint;
    const b = points[i] as TrackPoint;
    const speed =
      a.speedKph !== null && b.speedKph !== null
        ? (a.speedKph + b.speedKph) / 2
        : (b.speedKph ?? a.speedKph);
    features.push({
      type: "Feature",
      geometry: {
        type: "LineString",
        coordinates: [
          [a.lon, a.lat],
          [b.lon, b.lat],
        ],
      },
      properties: { colour: speedColour(speed) },
    });
  }
  return { type: "FeatureCollection", features };
}

export function routePoints(points: readonly TrackPoint[]): FeatureCollection<Point> {
  return {
    type: "FeatureCollection",
    features: points.map((p, i) => ({
      type: "Feature",
      geometry: { type: "Point", coordinates: [p.lon, p.lat] },
      properties: { i, t: p.tMs, speed: p.speedKph },
    })),
  };
}

/** The replay clock's next time: `elapsedMs` of wall time at rate ×`rate`, within the track. */
export function advance(tMs: number, elapsedMs: number, rate: number, endMs: number): number {
  return Math.min(endMs, tMs + (elapsedMs / 1000) * rate * ROUTE_MS_PER_SECOND_AT_X1);
}

export function rangeTooLong(fromMs: number, toMs: number, maxDays: number): boolean {
  return toMs - fromMs > maxDays * 86_400_000;
}

/** What a range allows: a replay (history with `max_points`) and an export (raw rows). */
export function rangeAllows(fromMs: number, toMs: number) {
  return {
    replay: !rangeTooLong(fromMs, toMs, MAX_ROLLUP_DAYS),
    export: !rangeTooLong(fromMs, toMs, MAX_RAW_DAYS),
  };
}
