import { useQuery } from "@tanstack/react-query";
import { useTranslation } from "react-i18next";
import { Link } from "react-router-dom";
import { api, unwrap, type VehicleOut } from "../../api/client";
import {
  formatDistance,
  formatHeading,
  formatPercent,
  formatRelative,
  formatSpeed,
} from "../../lib/format";
import { statusOf } from "../live/fleet";
import { fleet, useLive } from "../live/liveStore";
import { useDrivers } from "./api";

function startOfToday(): string {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return d.toISOString();
}

export function VehiclePanel({ vehicles }: { vehicles: readonly VehicleOut[] }) {
  const { t, i18n } = useTranslation();
  const selectedKey = useLive((s) => s.selectedKey);
  const follow = useLive((s) => s.follow);
  useLive((s) => s.tick);
  const drivers = useDrivers();
  const vehicle = vehicles.find((v) => v.id === selectedKey);
  const today = useQuery({
    queryKey: ["today-distance", selectedKey],
    enabled: !!vehicle,
    staleTime: 60_000,
    queryFn: async () =>
      unwrap(
        await api.GET("/api/v1/reports/summary", {
          params: { query: { from: startOfToday(), vehicle_id: selectedKey as string } },
        }),
      ).items[0] ?? null,
  });
  if (!selectedKey) return null;
  const fix = fleet.fixes.get(selectedKey) ?? null;
  const now = Date.now();
  const driver = drivers.data?.find((d) => d.id === vehicle?.current_driver_id);
  const status = fix ? statusOf(fix, now) : "nofix";
  const lang = i18n.language;
  const rows: Array<[string, string, string]> = [
    [
      "last-fix",
      t("panel.lastFix"),
      fix ? formatRelative(fix.recordedAtMs, now, lang) : t("status.nofix"),
    ],
    ["speed", t("panel.speed"), formatSpeed(fix?.speedKph, lang)],
    ["heading", t("panel.heading"), formatHeading(fix?.headingDeg)],
    ["battery", t("panel.battery"), formatPercent(fix?.batteryPct, lang)],
    [
      "ignition",
      t("panel.ignition"),
      fix?.ignition == null ? "—" : fix.ignition ? t("panel.on") : t("panel.off"),
    ],
    ["driver", t("panel.driver"), driver?.name ?? "—"],
    ["device", t("panel.device"), fix?.deviceId ?? "—"],
    [
      "today",
      t("panel.todayDistance"),
      today.data ? formatDistance(today.data.distance_m, lang) : "—",
    ],
  ];
  return (
    <aside className="vehicle-panel card" aria-label={t("panel.title")} data-testid="vehicle-panel">
      <header>
        <h2>
          <span className={`dot status-${status}`} aria-hidden="true" />{" "}
          {vehicle?.name ?? selectedKey.slice(0, 8)}
        </h2>
        <button
          type="button"
          className="icon"
          aria-label={t("common.close")}
          onClick={() => useLive.getState().select(null)}
          data-testid="panel-close"
        >
          ×
        </button>
      </header>
      {vehicle ? <p className="row-sub">{vehicle.plate}</p> : null}
      <dl>
        {rows.map(([id, label, value]) => (
          <div key={id}>
            <dt>{label}</dt>
            <dd data-testid={`panel-${id}`}>{value}</dd>
          </div>
        ))}
      </dl>
      <label className="inline">
        <input
          type="checkbox"
          checked={follow}
          onChange={(e) => useLive.getState().setFollow(e.target.checked)}
          data-testid="follow-toggle"
        />
        {t("panel.follow")}
      </label>
      <nav className="panel-links">
        <Link to={`/history/${selectedKey}`} data-testid="open-history">
          {t("panel.history")}
        </Link>
        <Link to={`/history/${selectedKey}?tab=trips`}>{t("panel.trips")}</Link>
        <Link to={`/alerts?vehicle_id=${selectedKey}`}>{t("panel.alerts")}</Link>
      </nav>
    </aside>
  );
}
