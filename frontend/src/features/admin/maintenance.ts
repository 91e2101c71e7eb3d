// A maintenance schedule being written: what the form holds (strings, as typed) and the
// bodies it becomes, a new schedule's or an edit's (only what changed; the meter is fixed).
import type { Schemas } from "../../api/client";

export type Meter = Schemas["MaintenanceMeter"];
type Schedule = Pick<Schemas["MaintenanceOut"], "name" | "meter" | "interval" | "next_due">;

export interface MaintenanceDraft {
  name: string;
  meter: Meter;
  interval: string;
  /** Blank on a new schedule: the API makes it the meter now plus the interval. */
  nextDue: string;
}

export const NEW_SCHEDULE: MaintenanceDraft = {
  name: "",
  meter: "odometer_km",
  interval: "",
  nextDue: "",
};

export function draftOf(schedule: Schedule): MaintenanceDraft {
  return {
    name: schedule.name,
    meter: schedule.meter,
    interval: String(schedule.interval),
    nextDue: String(schedule.next_due),
  };
}

export function createBody(draft: MaintenanceDraft): Schemas["MaintenanceCreate"] {
  const nextDue = draft.nextDue.trim();
  return {
    name: draft.name.trim(),
    meter: draft.meter,
    interval: Number(draft.interval),
    ...(nextDue ? { next_due: Number(nextDue) } : {}),
  };
}

export function updateBody(
  draft: MaintenanceDraft,
  schedule: Schedule,
): Schemas["MaintenanceUpdate"] {
  const body: Schemas["MaintenanceUpdate"] = {};
  const name = draft.name.trim();
  if (name !== schedule.name) body.name = name;
  if (Number(draft.interval) !== schedule.interval) body.interval = Number(draft.interval);
  if (draft.nextDue.trim() && Number(draft.nextDue) !== schedule.next_due) {
    body.next_due = Number(draft.nextDue);
  }
  return body;
}
