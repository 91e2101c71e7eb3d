import { describe, expect, it } from "vitest";
import { BIG_FLEET_DRAW_INTERVAL_MS, drawDelayMs, GLIDE_LIMIT } from "./vehicleFeatures";

describe("drawDelayMs", () => {
  const big = GLIDE_LIMIT + 1;

  it("updates a small fleet's source every frame", () => {
    expect(drawDelayMs(GLIDE_LIMIT, 10_000, 10_000)).toBe(0);
  });

  it("updates a big fleet's source at most once an interval", () => {
    expect(drawDelayMs(big, 10_000, 10_000)).toBe(BIG_FLEET_DRAW_INTERVAL_MS);
    expect(drawDelayMs(big, 10_000, 10_400)).toBe(BIG_FLEET_DRAW_INTERVAL_MS - 400);
    expect(drawDelayMs(big, 10_000, 10_000 + BIG_FLEET_DRAW_INTERVAL_MS)).toBe(0);
    expect(drawDelayMs(big, 10_000, 12_500)).toBe(0);
  });

  it("is no faster than the fixes of a 10,000-vehicle fleet, once a second each", () => {
    expect(drawDelayMs(10_000, 0, 0)).toBeGreaterThanOrEqual(1000);
  });
});
