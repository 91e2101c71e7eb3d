// An alert rule being edited, and the API body it becomes.
import type { Schemas } from "../../api/client";

export type RuleIn = Schemas["AlertRuleCreate"];
export type EventType = RuleIn["event_types"][number];
export type Channel = RuleIn["channels"][number];

export const EVENT_TYPES: EventType[] = [
  "geofence_enter",
  "geofence_exit",
  "overspeed",
  "idle",
  "device_online",
  "device_offline",
  "low_battery",
  "maintenance_due",
];
export const CHANNELS: Channel[] = ["in_app", "email", "webhook", "push"];

export interface Draft {
  name: string;
  eventTypes: EventType[];
  vehicleIds: string[];
  geofenceIds: string[];
  groups: string;
  channels: Channel[];
  emails: string;
  /** Push recipients (none: every user of the org). */
  userIds: string[];
  cooldownS: string;
  activeFrom: string;
  activeTo: string;
}

export const EMPTY: Draft = {
  name: "",
  eventTypes: [],
  vehicleIds: [],
  geofenceIds: [],
  groups: "",
  channels: ["in_app"],
  emails: "",
  userIds: [],
  cooldownS: "300",
  activeFrom: "",
  activeTo: "",
};

const list = (text: string) =>
  text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

export function ruleBody(draft: Draft, timezone: string): RuleIn {
  return {
    name: draft.name.trim(),
    event_types: draft.eventTypes,
    vehicle_ids: draft.vehicleIds,
    geofence_ids: draft.geofenceIds,
    vehicle_groups: list(draft.groups),
    channels: draft.channels,
    recipients: { emails: list(draft.emails), user_ids: draft.userIds },
    cooldown_s: Number(draft.cooldownS) || 0,
    active_hours:
      draft.activeFrom && draft.activeTo
        ? { start: draft.activeFrom, end: draft.activeTo, days: [0, 1, 2, 3, 4, 5, 6] }
        : null,
    timezone,
    active: true,
  };
}
