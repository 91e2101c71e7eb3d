import { describe, expect, it } from "vitest";
import { EMPTY, ruleBody } from "./rules";

describe("alert rule body", () => {
  it("splits lists, sets active hours only when both ends are given, and names the zone", () => {
    const body = ruleBody(
      {
        ...EMPTY,
        name: " Depot ",
        eventTypes: ["geofence_enter"],
        groups: "north, ,south",
        emails: "a@x.io,b@x.io",
        userIds: ["0b8e7f52-5d0c-4a53-9b3c-2f1f3c4d5e6f"],
        cooldownS: "60",
        activeFrom: "08:00",
        activeTo: "18:00",
      },
      "Asia/Ho_Chi_Minh",
    );
    expect(body).toMatchObject({
      name: "Depot",
      event_types: ["geofence_enter"],
      vehicle_groups: ["north", "south"],
      recipients: {
        emails: ["a@x.io", "b@x.io"],
        user_ids: ["0b8e7f52-5d0c-4a53-9b3c-2f1f3c4d5e6f"],
      },
      cooldown_s: 60,
      active_hours: { start: "08:00", end: "18:00" },
      timezone: "Asia/Ho_Chi_Minh",
      channels: ["in_app"],
    });
    expect(ruleBody({ ...EMPTY, activeFrom: "08:00" }, "UTC").active_hours).toBeNull();
  });
});
