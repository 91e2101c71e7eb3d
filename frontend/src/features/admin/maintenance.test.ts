import { describe, expect, it } from "vitest";
import { createBody, draftOf, NEW_SCHEDULE, updateBody } from "./maintenance";

const OIL = { name: "Oil change", meter: "odometer_km" as const, interval: 5000, next_due: 10100 };

describe("a maintenance schedule's bodies", () => {
  it("leaves a new schedule's first due point to the API unless given", () => {
    const draft = { ...NEW_SCHEDULE, name: " Oil change ", interval: "5000" };
    expect(createBody(draft)).toEqual({ name: "Oil change", meter: "odometer_km", interval: 5000 });
    expect(createBody({ ...draft, meter: "engine_hours", nextDue: "250.5" })).toEqual({
      name: "Oil change",
      meter: "engine_hours",
      interval: 5000,
      next_due: 250.5,
    });
  });

  it("sends only what an edit changed, and never the meter", () => {
    const draft = draftOf(OIL);
    expect(draft).toEqual({
      name: "Oil change",
      meter: "odometer_km",
      interval: "5000",
      nextDue: "10100",
    });
    expect(updateBody(draft, OIL)).toEqual({});
    expect(updateBody({ ...draft, meter: "engine_hours", interval: "7500" }, OIL)).toEqual({
      interval: 7500,
    });
    expect(updateBody({ ...draft, name: "Oil + filter", nextDue: "12000" }, OIL)).toEqual({
      name: "Oil + filter",
      next_due: 12000,
    });
    expect(updateBody({ ...draft, nextDue: " " }, OIL)).toEqual({});
  });
});
