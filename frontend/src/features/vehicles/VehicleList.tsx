import { useVirtualizer } from "@tanstack/react-virtual";
import { useMemo, useRef, useState } from "react";
import { useTranslation } from "react-i18next";
import type { VehicleOut } from "../../api/client";
import { formatRelative, formatSpeed } from "../../lib/format";
import { fleet, useLive } from "../live/liveStore";
import { buildRows, countByStatus, filterRows, type StatusFilter } from "./rows";

const ROW_PX = 52;

export function VehicleList({ vehicles }: { vehicles: readonly VehicleOut[] }) {
  const { t, i18n } = useTranslation();
  const tick = useLive((s) => s.tick);
  const selectedKey = useLive((s) => s.selectedKey);
  const [search, setSearch] = useState("");
  const [status, setStatus] = useState<StatusFilter>("all");
  const [group, setGroup] = useState("");
  const parent = useRef<HTMLDivElement>(null);

  // Recomputed on the live tick (at most once a second), not on every frame.
  const rows = useMemo(() => buildRows(vehicles, fleet.fixes, Date.now()), [vehicles, tick]); // eslint-disable-line react-hooks/exhaustive-deps
  const counts = useMemo(() => countByStatus(rows), [rows]);
  const groups = useMemo(
    () => [...new Set(vehicles.map((v) => v.group).filter((g): g is string => !!g))].sort(),
    [vehicles],
  );
  const shown = useMemo(
    () => filterRows(rows, search, status, group),
    [rows, search, status, group],
  );
  const virtualizer = useVirtualizer({
    count: shown.length,
    getScrollElement: () => parent.current,
    estimateSize: () => ROW_PX,
    overscan: 8,
  });
  const now = Date.now();
  const statuses: StatusFilter[] = ["all", "moving", "stopped", "offline", "nofix"];

  return (
    <section className="vehicle-list" aria-label={t("vehicles.title")}>
      <div className="list-tools">
        <input
          type="search"
          placeholder={t("vehicles.search")}
          aria-label={t("vehicles.search")}
          value={search}
          onChange={(e) => setSearch(e.target.value)}
          data-testid="vehicle-search"
        />
        <div className="status-filters" role="group" aria-label={t("vehicles.statusFilter")}>
          {statuses.map((s) => (
            <button
              key={s}
              type="button"
              className={`chip status-${s}`}
              aria-pressed={status === s}
              onClick={() => setStatus(s)}
              data-testid={`status-filter-${s}`}
            >
              {t(`status.${s}`)}{" "}
              <span data-testid={`count-${s}`}>{s === "all" ? rows.length : counts[s]}</span>
            </button>
          ))}
        </div>
        {groups.length > 0 ? (
          <select
            value={group}
            onChange={(e) => setGroup(e.target.value)}
            aria-label={t("vehicles.group")}
            data-testid="group-filter"
          >
            <option value="">{t("vehicles.allGroups")}</option>
            {groups.map((g) => (
              <option key={g} value={g}>
                {g}
              </option>
            ))}
          </select>
        ) : null}
      </div>
      <div
        ref={parent}
        className="list-scroll"
        role="listbox"
        aria-label={t("vehicles.title")}
        data-testid="vehicle-list"
        data-count={shown.length}
      >
        {shown.length === 0 ? <p className="empty">{t("vehicles.none")}</p> : null}
        <div style={{ height: virtualizer.getTotalSize(), position: "relative" }}>
          {virtualizer.getVirtualItems().map((item) => {
            const row = shown[item.index];
            if (!row) return null;
            return (
              <div
                key={row.key}
                role="option"
                aria-selected={row.key === selectedKey}
                tabIndex={0}
                className="vehicle-row"
                data-testid="vehicle-row"
                data-vehicle-id={row.key}
                data-status={row.status}
                style={{
                  position: "absolute",
                  top: 0,
                  left: 0,
                  right: 0,
                  height: ROW_PX,
                  transform: `translateY(${item.start}px)`,
                }}
                onClick={() => useLive.getState().select(row.key)}
                onKeyDown={(e) => {
                  if (e.key === "Enter" || e.key === " ") {
                    e.preventDefault();
                    useLive.getState().select(row.key);
                  }
                }}
              >
                <span className={`dot status-${row.status}`} aria-hidden="true" />
                <span className="row-main">
                  <span className="row-name">{row.name}</span>
                  <span className="row-sub">
                    {row.plate} · {t(`status.${row.status}`)}
                  </span>
                </span>
                <span className="row-side">
                  {row.fix ? (
                    <>
                      <span>{formatSpeed(row.fix.speedKph, i18n.language)}</span>
                      <span className="row-sub">
                        {formatRelative(row.fix.recordedAtMs, now, i18n.language)}
                      </span>
                    </>
                  ) : null}
                </span>
              </div>
            );
          })}
        </div>
      </div>
    </section>
  );
}
