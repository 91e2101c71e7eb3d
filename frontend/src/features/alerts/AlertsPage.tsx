import { useQuery } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { useTranslation } from "react-i18next";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import { ProblemMessage } from "../../components/ProblemMessage";
import { formatDateTime } from "../../lib/format";
import { useCan } from "../auth/session";
import { useLive } from "../live/liveStore";
import { useVehicles } from "../vehicles/api";
import { useAlertFeed } from "./store";
import { useAck } from "./useAck";

const STATUSES = ["open", "acknowledged", "resolved"] as const;
const TYPES = [
  "geofence_enter",
  "geofence_exit",
  "overspeed",
  "idle",
  "device_online",
  "device_offline",
  "low_battery",
] as const;

type Status = (typeof STATUSES)[number];
type AlertType = (typeof TYPES)[number];

export default function AlertsPage() {
  const { t, i18n } = useTranslation();
  const navigate = useNavigate();
  const can = useCan();
  const [params, setParams] = useSearchParams();
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const vehicles = useVehicles();
  const ack = useAck();
  const status = (params.get("status") ?? "") as Status | "";
  const type = (params.get("type") ?? "") as AlertType | "";
  const vehicleId = params.get("vehicle_id") ?? "";
  const from = params.get("from") ?? "";
  const to = params.get("to") ?? "";
  useEffect(() => useAlertFeed.getState().markAllRead(), []);
  const alerts = useQuery({
    queryKey: ["alerts", status, type, vehicleId, from, to],
    queryFn: async () =>
      unwrap(
        await api.GET("/api/v1/alerts", {
          params: {
            query: {
              limit: 200,
              ...(status ? { status } : {}),
              ...(type ? { type } : {}),
              ...(vehicleId ? { vehicle_id: vehicleId } : {}),
              ...(from ? { from: new Date(from).toISOString() } : {}),
              ...(to ? { to: new Date(to).toISOString() } : {}),
            },
          },
        }),
      ),
  });
  const names = new Map((vehicles.data ?? []).map((v) => [v.id, v.name]));
  const set = (key: string, value: string) => {
    const next = new URLSearchParams(params);
    if (value) next.set(key, value);
    else next.delete(key);
    setParams(next, { replace: true });
  };
  const toggle = (id: string) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    setSelected(next);
  };
  const items = alerts.data?.items ?? [];
  return (
    <main className="page">
      <h1>{t("alerts.title")}</h1>
      <p>
        <Link to="/alerts/rules" data-testid="alert-rules-link">
          {t("alerts.rules")}
        </Link>
      </p>
      <div className="filters" role="search">
        <label>
          {t("alerts.status")}
          <select
            value={status}
            onChange={(e) => set("status", e.target.value)}
            data-testid="alert-status-filter"
          >
            <option value="">{t("alerts.any")}</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {t(`alerts.${s}`)}
              </option>
            ))}
          </select>
        </label>
        <label>
          {t("alerts.type")}
          <select
            value={type}
            onChange={(e) => set("type", e.target.value)}
            data-testid="alert-type-filter"
          >
            <option value="">{t("alerts.any")}</option>
            {TYPES.map((s) => (
              <option key={s} value={s}>
                {t(`alertType.${s}`)}
              </option>
            ))}
          </select>
        </label>
        <label>
          {t("alerts.vehicle")}
          <select
            value={vehicleId}
            onChange={(e) => set("vehicle_id", e.target.value)}
            data-testid="alert-vehicle-filter"
          >
            <option value="">{t("alerts.any")}</option>
            {(vehicles.data ?? []).map((v) => (
              <option key={v.id} value={v.id}>
                {v.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          {t("common.from")}
          <input type="datetime-local" value={from} onChange={(e) => set("from", e.target.value)} />
        </label>
        <label>
          {t("common.to")}
          <input type="datetime-local" value={to} onChange={(e) => set("to", e.target.value)} />
        </label>
        {can.edit ? (
          <button
            type="button"
            disabled={selected.size === 0 || ack.isPending}
            onClick={() => ack.mutate([...selected], { onSuccess: () => setSelected(new Set()) })}
            data-testid="ack-selected"
          >
            {t("alerts.ackSelected")} ({selected.size})
          </button>
        ) : null}
      </div>
      <ProblemMessage error={alerts.error ?? ack.error} />
      {items.length === 0 && alerts.isSuccess ? <p className="empty">{t("alerts.none")}</p> : null}
      <div className="table-wrap">
        <table data-testid="alert-table">
          <thead>
            <tr>
              {can.edit ? <th scope="col">{t("alerts.select")}</th> : null}
              <th scope="col">{t("alerts.time")}</th>
              <th scope="col">{t("alerts.type")}</th>
              <th scope="col">{t("alerts.vehicle")}</th>
              <th scope="col">{t("alerts.status")}</th>
              <th scope="col">{t("common.actions")}</th>
            </tr>
          </thead>
          <tbody>
            {items.map((a) => (
              <tr key={a.id} data-testid="alert-row" data-alert-id={a.id} data-status={a.status}>
                {can.edit ? (
                  <td>
                    <input
                      type="checkbox"
                      aria-label={t("alerts.select")}
                      checked={selected.has(a.id)}
                      disabled={a.status !== "open"}
                      onChange={() => toggle(a.id)}
                    />
                  </td>
                ) : null}
                <td>{formatDateTime(a.occurred_at, i18n.language)}</td>
                <td>
                  {t(`alertType.${a.type}`, { defaultValue: a.type })}
                  <div className="row-sub">{a.rule_name}</div>
                </td>
                <td>
                  {a.vehicle_id ? (
                    <button
                      type="button"
                      className="link"
                      onClick={() => {
                        useLive.getState().select(a.vehicle_id as string);
                        const at = new Date(a.occurred_at).getTime();
                        navigate(
                          `/history/${a.vehicle_id}?from=${new Date(at - 15 * 60_000).toISOString()}&to=${new Date(at + 15 * 60_000).toISOString()}`,
                        );
                      }}
                    >
                      {names.get(a.vehicle_id) ?? a.vehicle_id.slice(0, 8)}
                    </button>
                  ) : (
                    "—"
                  )}
                </td>
                <td>{t(`alerts.${a.status}`, { defaultValue: a.status })}</td>
                <td>
                  {can.edit && a.status === "open" ? (
                    <button
                      type="button"
                      onClick={() => ack.mutate([a.id])}
                      disabled={ack.isPending}
                      data-testid="ack-button"
                    >
                      {t("alerts.ack")}
                    </button>
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
