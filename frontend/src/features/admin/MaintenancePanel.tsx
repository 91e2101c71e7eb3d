// A vehicle's maintenance schedules (by odometer km or engine hours): the meter now, what is
// due, "Serviced" (the next due point becomes the meter now plus the interval), add, delete.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { useTranslation } from "react-i18next";
import { api, unwrap, type Schemas } from "../../api/client";
import { ProblemMessage } from "../../components/ProblemMessage";

type Meter = Schemas["MaintenanceMeter"];

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
  const [form, setForm] = useState({ name: "", meter: "odometer_km" as Meter, interval: "" });
  const create = useMutation({
    mutationFn: async () =>
      unwrap(
        await api.POST("/api/v1/vehicles/{vehicle_id}/maintenance", {
          ...path,
          body: { name: form.name, meter: form.meter, interval: Number(form.interval) },
        }),
      ),
    onSuccess: () => {
      setForm({ ...form, name: "", interval: "" });
      refresh();
    },
  });
  const paths = (id: string) => ({
    params: { path: { vehicle_id: vehicle.id, schedule_id: id } },
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
    onSuccess: refresh,
  });
  const number = (value: number) =>
    value.toLocaleString(i18n.language, { maximumFractionDigits: 1 });
  const unit = (meter: Meter) => t(`maintenance.unit.${meter}`);
  return (
    <section className="card" data-testid="maintenance-panel">
      <h2>{t("maintenance.title", { vehicle: vehicle.name })}</h2>
      <form
        className="form"
        onSubmit={(e) => {
          e.preventDefault();
          create.mutate();
        }}
        data-testid="maintenance-form"
      >
        <label>
          {t("common.name")}
          <input
            required
            value={form.name}
            onChange={(e) => setForm({ ...form, name: e.target.value })}
            data-testid="maintenance-name"
          />
        </label>
        <label>
          {t("maintenance.meter")}
          <select
            value={form.meter}
            onChange={(e) => setForm({ ...form, meter: e.target.value as Meter })}
          >
            <option value="odometer_km">{t("maintenance.meters.odometer_km")}</option>
            <option value="engine_hours">{t("maintenance.meters.engine_hours")}</option>
          </select>
        </label>
        <label>
          {t("maintenance.interval", { unit: unit(form.meter) })}
          <input
            required
            type="number"
            min="0.1"
            step="any"
            value={form.interval}
            onChange={(e) => setForm({ ...form, interval: e.target.value })}
            data-testid="maintenance-interval"
          />
        </label>
        <button type="submit" className="primary" disabled={create.isPending}>
          {t("common.create")}
        </button>
      </form>
      <ProblemMessage error={schedules.error ?? create.error ?? serviced.error ?? remove.error} />
      <div className="table-wrap">
        <table data-testid="maintenance-schedules">
          <thead>
            <tr>
              <th>{t("common.name")}</th>
              <th>{t("maintenance.every")}</th>
              <th>{t("maintenance.now")}</th>
              <th>{t("maintenance.nextDue")}</th>
              <th>{t("common.actions")}</th>
            </tr>
          </thead>
          <tbody>
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
          </tbody>
        </table>
      </div>
    </section>
  );
}
