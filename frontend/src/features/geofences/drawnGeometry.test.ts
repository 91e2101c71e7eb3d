import { describe, expect, it } from "vitest";
import { circlePolygon } from "./geometry";
import { drawFeature, drawnGeometry } from "./drawnGeometry";

const SQUARE = {
  type: "Polygon" as const,
  coordinates: [
    [
      [0, 0],
      [1, 0],
      [1, 1],
      [0, 1],
      [0, 0],
    ],
  ],
};

describe("drawn geofence geometry", () => {
  it("reads a circle back from its ring: centre and radius", () => {
    const geometry = drawnGeometry("circle", circlePolygon([106.7, 10.78], 500));
    expect(geometry?.type).toBe("Circle");
    if (geometry?.type !== "Circle") return;
    expect(geometry.radius_m).toBe(500);
    expect(geometry.center[0]).toBeCloseTo(106.7, 5);
    expect(geometry.center[1]).toBeCloseTo(10.78, 5);
  });

  it("keeps a polygon and refuses a degenerate ring or one with holes", () => {
    expect(drawnGeometry("polygon", SQUARE)).toEqual(SQUARE);
    const degenerate = [
      [0, 0],
      [1, 1],
      [1, 1],
      [0, 0],
    ];
    expect(drawnGeometry("polygon", { type: "Polygon", coordinates: [degenerate] })).toBeNull();
    const holed = {
      type: "Polygon" as const,
      coordinates: [...SQUARE.coordinates, ...SQUARE.coordinates],
    };
    expect(drawnGeometry("polygon", holed)).toBeNull();
  });
});

describe("a saved geofence as a terra-draw feature", () => {
  it("makes a circle a closed ring that reads back as the same circle", () => {
    const feature = drawFeature({ type: "Circle", center: [106.7, 10.78], radius_m: 750 });
    expect(feature?.properties.mode).toBe("circle");
    const ring = feature!.geometry.coordinates[0]!;
    expect(ring[0]).toEqual(ring[ring.length - 1]);
    for (const [lon, lat] of ring) {
      // terra-draw refuses more than 9 decimals
      expect(String(lon).split(".")[1]?.length ?? 0).toBeLessThanOrEqual(9);
      expect(String(lat).split(".")[1]?.length ?? 0).toBeLessThanOrEqual(9);
    }
    const back = drawnGeometry("circle", feature!.geometry);
    expect(back).toMatchObject({ type: "Circle", radius_m: 750 });
  });

  it("keeps a polygon's ring and cannot edit one with holes", () => {
    expect(drawFeature(SQUARE)).toEqual({
      type: "Feature",
      geometry: SQUARE,
      properties: { mode: "polygon" },
    });
    expect(
      drawFeature({ type: "Polygon", coordinates: [SQUARE.coordinates[0], SQUARE.coordinates[0]] }),
    ).toBeNull();
    expect(drawFeature({ type: "Point", coordinates: [0, 0] })).toBeNull();
  });
});
