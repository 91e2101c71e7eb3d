import { describe, expect, it } from "vitest";
import {
  formatDistance,
  formatDuration,
  formatHeading,
  formatRelative,
  formatSpeed,
  toLocalInput,
} from "./format";

describe("formatters", () => {
  it("says how long ago a fix was, in the user's language", () => {
    const now = Date.UTC(2026, 0, 1, 12, 0, 0);
    expect(formatRelative(now - 12_000, now, "en")).toBe("12 sec. ago");
    expect(formatRelative(now - 5 * 60_000, now, "en")).toBe("5 min. ago");
    expect(formatRelative(now - 3 * 3600_000, now, "en")).toBe("3 hr. ago");
    expect(formatRelative(now - 12_000, now, "vi")).toContain("12");
  });

  it("names the units of speed and distance", () => {
    expect(formatSpeed(42.4, "en")).toBe("42 km/h");
    expect(formatSpeed(null, "en")).toBe("—");
    expect(formatDistance(850, "en")).toBe("850 m");
    expect(formatDistance(12_345, "en")).toBe("12.3 km");
  });

  it("gives a heading in degrees and a compass point", () => {
    expect(formatHeading(0)).toBe("0° N");
    expect(formatHeading(270)).toBe("270° W");
    expect(formatHeading(-45)).toBe("315° NW");
    expect(formatHeading(359)).toBe("359° N");
  });

  it("writes durations with their units", () => {
    expect(formatDuration(12)).toBe("12 s");
    expect(formatDuration(252)).toBe("4 min 12 s");
    expect(formatDuration(3900)).toBe("1 h 05 min");
  });

  it("round-trips a local input value", () => {
    const ms = new Date(2026, 4, 6, 7, 8).getTime();
    expect(toLocalInput(ms)).toBe("2026-05-06T07:08");
  });
});
