// A vehicle's maintenance schedules (by odometer km or engine hours): the meter now, what is
// due, "Serviced" (the next due point becomes the meter now plus the interval), add, edit
// (name, interval, next due point), delete.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { useTranslation } from "react-i18next";
import { api, unwrap, type Schemas } from "../../api/client";
import { ProblemMessage } from "../../components/ProblemMessage";
import {
  createBody,
  draftOf,
  type MaintenanceDraft,
  type Meter,
  NEW_SCHEDULE,
  updateBody,
} from "./maintenance";
import { MaintenanceForm } from "./MaintenanceForm";
import { Table } from "./Table";

export function MaintenancePanel({ vehicle }: { vehicle: { id: string; name: string } }) {
  const { t, i18n } = useTranslation();
  const client = useQueryClient();
  const queryKey = ["maintenance", vehicle.id];
  const path = { params: { path: { vehicle_id: vehicle.id } } };
  const schedules = useQuery({
    queryKey,
    queryFn: async () =>
      unwrap(await api.GET("/api/v1/vehicles/{vehicle_id}/maintenance", path)).items,
  });
  const refresh = () => void client.invalidateQueries({ queryKey });
  const [draft, setDraft] = useState<MaintenanceDraft>(NEW_SCHEDULE);
  const [editing, setEditing] = useState<Schemas["MaintenanceOut"] | null>(null);
  const paths = (id: string) => ({
    params: { path: { vehicle_id: vehicle.id, schedule_id: id } },
  });
  const stopEditing = () => {
    setEditing(null);
    setDraft({ ...NEW_SCHEDULE, meter: draft.meter });
  };
  const save = useMutation({
    mutationFn: async () =>
      editing
        ? unwrap(
            await api.PATCH("/api/v1/vehicles/{vehicle_id}/maintenance/{schedule_id}", {
              ...paths(editing.id),
              body: updateBody(draft, editing),
            }),
          )
        : unwrap(
            await api.POST("/api/v1/vehicles/{vehicle_id}/maintenance", {
              ...path,
              body: createBody(draft),
            }),
          ),
    onSuccess: () => {
      stopEditing();
      refresh();
    },
  });
  const serviced = useMutation({
    mutationFn: async (id: string) =>
      unwrap(
        await api.POST("/api/v1/vehicles/{vehicle_id}/maintenance/{schedule_id}/service", {
          ...paths(id),
          body: {},
        }),
      ),
    onSuccess: refresh,
  });
  const remove = useMutation({
    mutationFn: async (id: string) =>
      unwrap(
        await api.DELETE("/api/v1/vehicles/{vehicle_id}/maintenance/{schedule_id}", paths(id)),
      ),
    onSuccess: (_, id) => {
      if (editing?.id === id) stopEditing();
      refresh();
    },
  });
  const number = (value: number) =>
    value.toLocaleString(i18n.language, { maximumFractionDigits: 1 });
  const unit = (meter: Meter) => t(`maintenance.unit.${meter}`);
  return (
    <section className="card" data-testid="maintenance-panel">
      <h2>{t("maintenance.title", { vehicle: vehicle.name })}</h2>
      {editing ? <h3>{t("maintenance.editing", { name: editing.name })}</h3> : null}
      <MaintenanceForm
        draft={draft}
        onDraft={setDraft}
        editing={editing !== null}
        pending={save.isPending}
        onSubmit={() => save.mutate()}
        onCancel={stopEditing}
      />
      <ProblemMessage error={schedules.error ?? save.error ?? serviced.error ?? remove.error} />
      <Table
        testId="maintenance-schedules"
        columns={[
          t("common.name"),
          t("maintenance.every"),
          t("maintenance.now"),
          t("maintenance.nextDue"),
          t("common.actions"),
        ]}
      >
        {(schedules.data ?? []).map((s) => (
          <tr key={s.id}>
            <td>{s.name}</td>
            <td>
              {number(s.interval)} {unit(s.meter)}
            </td>
            <td>
              {number(s.current_reading)} {unit(s.meter)}
            </td>
            <td>
              {number(s.next_due)} {unit(s.meter)}
              {s.due ? <strong> — {t("maintenance.due")}</strong> : null}
            </td>
            <td>
              <button
                type="button"
                aria-pressed={editing?.id === s.id}
                onClick={() => {
                  setEditing(s);
                  setDraft(draftOf(s));
                }}
                data-testid="maintenance-edit"
              >
                {t("common.edit")}
              </button>
              <button
                type="button"
                onClick={() => serviced.mutate(s.id)}
                data-testid="maintenance-serviced"
              >
                {t("maintenance.serviced")}
              </button>
              <button type="button" onClick={() => remove.mutate(s.id)}>
                {t("common.delete")}
              </button>
            </td>
          </tr>
        ))}
      </Table>
    </section>
  );
}
