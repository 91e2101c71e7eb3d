// Alert rules: which events, for which vehicles / groups / geofences, to which channels and
// recipients, with a cooldown and active hours; enable / disable, edit, delete.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { useTranslation } from "react-i18next";
import { api, unwrap, type Schemas } from "../../api/client";
import { ProblemMessage } from "../../components/ProblemMessage";
import { useUserDirectory } from "../admin/api";
import { useCan } from "../auth/session";
import { useGeofences } from "../geofences/api";
import { useVehicles } from "../vehicles/api";
import { RecipientPicker } from "./RecipientPicker";

import {
  CHANNELS,
  EMPTY,
  EVENT_TYPES,
  ruleBody,
  type Channel,
  type Draft,
  type EventType,
} from "./rules";

function toggled<T>(items: T[], item: T): T[] {
  return items.includes(item) ? items.filter((i) => i !== item) : [...items, item];
}

export default function RulesPage() {
  const { t } = useTranslation();
  const can = useCan();
  const client = useQueryClient();
  const vehicles = useVehicles();
  const geofences = useGeofences();
  const users = useUserDirectory(can.edit);
  const [draft, setDraft] = useState<Draft>(EMPTY);
  const [editing, setEditing] = useState<string | null>(null);
  const rules = useQuery({
    queryKey: ["alert-rules"],
    queryFn: async () =>
      unwrap(await api.GET("/api/v1/alert-rules", { params: { query: { limit: 200 } } })).items,
  });
  const refresh = () => void client.invalidateQueries({ queryKey: ["alert-rules"] });
  const timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const save = useMutation({
    mutationFn: async () => {
      const body = ruleBody(draft, timezone);
      if (editing) {
        unwrap(
          await api.PATCH("/api/v1/alert-rules/{rule_id}", {
            params: { path: { rule_id: editing } },
            body,
          }),
        );
      } else {
        unwrap(await api.POST("/api/v1/alert-rules", { body }));
      }
    },
    onSuccess: () => {
      setDraft(EMPTY);
      setEditing(null);
      refresh();
    },
  });
  const patch = useMutation({
    mutationFn: async ({ id, active }: { id: string; active: boolean }) =>
      unwrap(
        await api.PATCH("/api/v1/alert-rules/{rule_id}", {
          params: { path: { rule_id: id } },
          body: { active },
        }),
      ),
    onSuccess: refresh,
  });
  const remove = useMutation({
    mutationFn: async (id: string) =>
      unwrap(
        await api.DELETE("/api/v1/alert-rules/{rule_id}", { params: { path: { rule_id: id } } }),
      ),
    onSuccess: refresh,
  });
  const edit = (rule: Schemas["AlertRuleOut"]) => {
    setEditing(rule.id);
    setDraft({
      name: rule.name,
      eventTypes: rule.event_types.filter((e): e is EventType =>
        (EVENT_TYPES as string[]).includes(e),
      ),
      vehicleIds: rule.vehicle_ids,
      geofenceIds: rule.geofence_ids,
      groups: rule.vehicle_groups.join(", "),
      channels: rule.channels.filter((c): c is Channel => (CHANNELS as string[]).includes(c)),
      emails: rule.recipients.emails.join(", "),
      userIds: rule.recipients.user_ids,
      cooldownS: String(rule.cooldown_s),
      activeFrom: rule.active_hours?.start ?? "",
      activeTo: rule.active_hours?.end ?? "",
    });
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    save.mutate();
  };
  const multiple = (
    values: string[],
    options: Array<{ id: string; name: string }>,
    onChange: (ids: string[]) => void,
    label: string,
  ) => (
    <label>
      {label}
      <select
        multiple
        value={values}
        onChange={(e) => onChange([...e.target.selectedOptions].map((o) => o.value))}
        size={4}
      >
        {options.map((o) => (
          <option key={o.id} value={o.id}>
            {o.name}
          </option>
        ))}
      </select>
    </label>
  );

  return (
    <main className="page">
      <h1>{t("alerts.rules")}</h1>
      {can.edit ? (
        <form className="form card" onSubmit={submit} data-testid="rule-form">
          <label>
            {t("common.name")}
            <input
              required
              value={draft.name}
              onChange={(e) => setDraft({ ...draft, name: e.target.value })}
              data-testid="rule-name"
            />
          </label>
          <fieldset>
            <legend>{t("rules.events")}</legend>
            {EVENT_TYPES.map((type) => (
              <label key={type} className="inline">
                <input
                  type="checkbox"
                  checked={draft.eventTypes.includes(type)}
                  onChange={() =>
                    setDraft({ ...draft, eventTypes: toggled(draft.eventTypes, type) })
                  }
                  data-testid={`rule-event-${type}`}
                />
                {t(`alertType.${type}`)}
              </label>
            ))}
          </fieldset>
          {multiple(
            draft.vehicleIds,
            vehicles.data ?? [],
            (ids) => setDraft({ ...draft, vehicleIds: ids }),
            t("rules.vehicles"),
          )}
          {multiple(
            draft.geofenceIds,
            geofences.data ?? [],
            (ids) => setDraft({ ...draft, geofenceIds: ids }),
            t("rules.geofences"),
          )}
          <label>
            {t("rules.groups")}
            <input
              value={draft.groups}
              onChange={(e) => setDraft({ ...draft, groups: e.target.value })}
            />
          </label>
          <fieldset>
            <legend>{t("rules.channels")}</legend>
            {CHANNELS.map((channel) => (
              <label key={channel} className="inline">
                <input
                  type="checkbox"
                  checked={draft.channels.includes(channel)}
                  onChange={() =>
                    setDraft({ ...draft, channels: toggled(draft.channels, channel) })
                  }
                />
                {t(`rules.channel.${channel}`)}
              </label>
            ))}
          </fieldset>
          <label>
            {t("rules.emails")}
            <input
              value={draft.emails}
              onChange={(e) => setDraft({ ...draft, emails: e.target.value })}
            />
          </label>
          <RecipientPicker
            users={users.data}
            selected={draft.userIds}
            onChange={(ids) => setDraft({ ...draft, userIds: ids })}
          />
          <label>
            {t("rules.cooldown")}
            <input
              type="number"
              min={0}
              value={draft.cooldownS}
              onChange={(e) => setDraft({ ...draft, cooldownS: e.target.value })}
            />
          </label>
          <label>
            {t("rules.activeFrom")}
            <input
              type="time"
              value={draft.activeFrom}
              onChange={(e) => setDraft({ ...draft, activeFrom: e.target.value })}
            />
          </label>
          <label>
            {t("rules.activeTo")}
            <input
              type="time"
              value={draft.activeTo}
              onChange={(e) => setDraft({ ...draft, activeTo: e.target.value })}
            />
          </label>
          <button
            type="submit"
            className="primary"
            disabled={save.isPending}
            data-testid="rule-save"
          >
            {t("common.save")}
          </button>
          {editing ? (
            <button
              type="button"
              onClick={() => {
                setEditing(null);
                setDraft(EMPTY);
              }}
            >
              {t("common.cancel")}
            </button>
          ) : null}
          <ProblemMessage error={save.error ?? users.error} />
        </form>
      ) : null}
      <ProblemMessage error={rules.error ?? patch.error ?? remove.error} />
      <div className="table-wrap">
        <table data-testid="rule-table">
          <thead>
            <tr>
              <th>{t("common.name")}</th>
              <th>{t("rules.events")}</th>
              <th>{t("rules.channels")}</th>
              <th>{t("rules.cooldown")}</th>
              <th>{t("admin.active")}</th>
              <th>{t("common.actions")}</th>
            </tr>
          </thead>
          <tbody>
            {(rules.data ?? []).map((rule) => (
              <tr key={rule.id} data-testid="rule-row">
                <td>{rule.name}</td>
                <td>
                  {rule.event_types.map((e) => t(`alertType.${e}`, { defaultValue: e })).join(", ")}
                </td>
                <td>
                  {rule.channels
                    .map((c) => t(`rules.channel.${c}`, { defaultValue: c }))
                    .join(", ")}
                </td>
                <td>{rule.cooldown_s} s</td>
                <td>
                  <input
                    type="checkbox"
                    checked={rule.active}
                    disabled={!can.edit}
                    onChange={(e) => patch.mutate({ id: rule.id, active: e.target.checked })}
                    aria-label={t("admin.active")}
                    data-testid="rule-active"
                  />
                </td>
                <td>
                  {can.edit ? (
                    <>
                      <button type="button" onClick={() => edit(rule)}>
                        {t("common.edit")}
                      </button>{" "}
                      <button type="button" onClick={() => remove.mutate(rule.id)}>
                        {t("common.delete")}
                      </button>
                    </>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </main>
  );
}
