import { describe, expect, it } from "vitest";
import { circlePolygon } from "./geometry";
import { drawnGeometry } from "./drawnGeometry";

describe("drawn geofence geometry", () => {
  it("turns the circle mode's polygon back into the API's Circle", () => {
    const polygon = circlePolygon([106.7, 10.78], 500);
    const geometry = drawnGeometry("circle", polygon, { radiusKilometers: 0.5 });
    expect(geometry?.type).toBe("Circle");
    if (geometry?.type !== "Circle") return;
    expect(geometry.radius_m).toBe(500);
    expect(geometry.center[0]).toBeCloseTo(106.7, 4);
    expect(geometry.center[1]).toBeCloseTo(10.78, 4);
  });

  it("keeps a polygon and refuses a degenerate ring", () => {
    const square = {
      type: "Polygon" as const,
      coordinates: [
        [
          [0, 0],
          [1, 0],
          [1, 1],
          [0, 0],
        ],
      ],
    };
    expect(drawnGeometry("polygon", square, {})).toEqual(square);
    expect(
      drawnGeometry(
        "polygon",
        {
          type: "Polygon",
          coordinates: [
            [
              [0, 0],
              [1, 1],
              [0, 0],
            ],
          ],
        },
        {},
      ),
    ).toBeNull();
  });
});
