import { describe, expect, it } from "vitest";
import {
  advance,
  indexAt,
  parseTrack,
  MAX_RAW_DAYS,
  MAX_ROLLUP_DAYS,
  positionAt,
  rangeTooLong,
  routeSegments,
  speedColour,
  type TrackPoint,
} from "./replay";

const p = (s: number, lat: number, lon: number, speedKph: number | null = 0): TrackPoint => ({
  tMs: s * 1000,
  lat,
  lon,
  speedKph,
  headingDeg: null,
});

describe("replay interpolation", () => {
  const track = [p(0, 10, 100, 0), p(10, 10, 101, 40), p(20, 11, 101, 80)];

  it("interpolates position and speed between the fixes around a moment", () => {
    const mid = positionAt(track, 5000);
    expect(mid?.lat).toBeCloseTo(10);
    expect(mid?.lon).toBeCloseTo(100.5);
    expect(mid?.speedKph).toBeCloseTo(20);
    const later = positionAt(track, 17_500);
    expect(later?.lat).toBeCloseTo(10.75);
    expect(later?.speedKph).toBeCloseTo(70);
  });

  it("heads along the segment it is on", () => {
    expect(positionAt(track, 5000)?.headingDeg).toBeCloseTo(90, 0);
    expect(positionAt(track, 15_000)?.headingDeg).toBeCloseTo(0, 0);
  });

  it("clamps to the ends and finds the fix at or before a moment", () => {
    expect(positionAt(track, -5)?.lon).toBe(100);
    expect(positionAt(track, 99_000)?.lat).toBe(11);
    expect(positionAt([], 0)).toBeNull();
    expect(indexAt(track, 10_000)).toBe(1);
    expect(indexAt(track, 9_999)).toBe(0);
    expect(indexAt(track, 25_000)).toBe(2);
  });

  it("parses the API's history JSON into time order, skipping unusable points", () => {
    const parsed = parseTrack({
      points: [
        { recorded_at: "2026-01-01T00:00:10Z", lat: 1, lon: 2, speed_kph: 5 },
        { recorded_at: "2026-01-01T00:00:00Z", lat: 3, lon: 4, speed_kph: null },
        { recorded_at: "bad", lat: 1, lon: 1 },
      ],
    });
    expect(parsed.map((q) => q.lat)).toEqual([3, 1]);
    expect(parseTrack({})).toEqual([]);
  });

  it("advances the clock by rate minutes of route per second, stopping at the end", () => {
    expect(advance(0, 1000, 1, 1e9)).toBe(60_000);
    expect(advance(0, 500, 20, 1e9)).toBe(600_000);
    expect(advance(0, 10_000, 20, 100_000)).toBe(100_000);
  });

  it("refuses ranges longer than the API allows", () => {
    expect(rangeTooLong(0, 31 * 86_400_000, MAX_RAW_DAYS)).toBe(false);
    expect(rangeTooLong(0, 31 * 86_400_000 + 1, MAX_RAW_DAYS)).toBe(true);
    expect(rangeTooLong(0, 366 * 86_400_000, MAX_ROLLUP_DAYS)).toBe(false);
    expect(rangeTooLong(0, 366 * 86_400_000 + 1, MAX_ROLLUP_DAYS)).toBe(true);
  });
});

describe("speed colour scale", () => {
  it("runs from blue at standstill through green and yellow to red", () => {
    expect(speedColour(0)).toBe("#4575b4");
    expect(speedColour(30)).toBe("#1a9850");
    expect(speedColour(60)).toBe("#fee04c");
    expect(speedColour(120)).toBe("#a50026");
    expect(speedColour(300)).toBe("#a50026");
    expect(speedColour(null)).toBe("#888888");
  });

  it("blends between stops and never gets darker-green as speed rises past 30", () => {
    expect(speedColour(15)).toBe("#308782");
    const g = (kph: number) => parseInt(speedColour(kph).slice(1, 3), 16);
    for (let kph = 30; kph < 60; kph += 5) expect(g(kph + 5)).toBeGreaterThanOrEqual(g(kph));
  });

  it("colours each route segment by its mean speed", () => {
    const segments = routeSegments([p(0, 0, 0, 20), p(1, 0, 1, 40), p(2, 0, 2, null)]);
    expect(segments.features).toHaveLength(2);
    expect(segments.features[0]?.properties?.colour).toBe(speedColour(30));
    expect(segments.features[1]?.properties?.colour).toBe(speedColour(40));
  });
});
