// The org's summary report for a range: distance, driving and idle time, max and average
// speed per vehicle, with the API's CSV for download.
import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { useTranslation } from "react-i18next";
import { api, download, unwrap } from "../../api/client";
import { ProblemMessage } from "../../components/ProblemMessage";
import { formatDistance, formatDuration, formatSpeed, toLocalInput } from "../../lib/format";
import { MAX_ROLLUP_DAYS, rangeTooLong } from "../history/replay";
import { useVehicles } from "../vehicles/api";

export default function ReportsPage() {
  const { t, i18n } = useTranslation();
  const vehicles = useVehicles();
  const [openedAtMs] = useState(() => Date.now());
  const [fromInput, setFromInput] = useState(toLocalInput(openedAtMs - 7 * 86_400_000));
  const [toInput, setToInput] = useState(toLocalInput(openedAtMs));
  const [range, setRange] = useState({ fromInput, toInput });
  const [downloadError, setDownloadError] = useState<unknown>(null);
  const fromMs = new Date(range.fromInput).getTime();
  const toMs = new Date(range.toInput).getTime();
  const tooLong = rangeTooLong(fromMs, toMs, MAX_ROLLUP_DAYS);
  const query = { from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString() };
  const report = useQuery({
    queryKey: ["summary", query.from, query.to],
    enabled: !tooLong,
    queryFn: async () => unwrap(await api.GET("/api/v1/reports/summary", { params: { query } })),
  });
  const names = new Map((vehicles.data ?? []).map((v) => [v.id, v.name]));
  const lang = i18n.language;
  return (
    <main className="page">
      <h1>{t("reports.title")}</h1>
      <form
        className="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setRange({ fromInput, toInput });
        }}
      >
        <label>
          {t("common.from")}
          <input
            type="datetime-local"
            value={fromInput}
            onChange={(e) => setFromInput(e.target.value)}
            data-testid="report-from"
          />
        </label>
        <label>
          {t("common.to")}
          <input
            type="datetime-local"
            value={toInput}
            onChange={(e) => setToInput(e.target.value)}
            data-testid="report-to"
          />
        </label>
        <button type="submit">{t("common.apply")}</button>
        <button
          type="button"
          disabled={tooLong}
          onClick={() => {
            setDownloadError(null);
            const params = new URLSearchParams({ ...query, format: "csv" });
            download(`/api/v1/reports/summary?${params.toString()}`, "summary.csv").catch(
              setDownloadError,
            );
          }}
          data-testid="report-csv"
        >
          {t("reports.downloadCsv")}
        </button>
      </form>
      {tooLong ? (
        <p className="problem" role="alert" data-testid="range-too-long">
          {t("history.tooLong", { days: MAX_ROLLUP_DAYS })}
        </p>
      ) : null}
      <ProblemMessage error={report.error ?? downloadError} />
      <div className="table-wrap">
        <table data-testid="summary-table">
          <thead>
            <tr>
              <th>{t("reports.vehicle")}</th>
              <th>{t("reports.distance")}</th>
              <th>{t("reports.driving")}</th>
              <th>{t("reports.idle")}</th>
              <th>{t("reports.maxSpeed")}</th>
              <th>{t("reports.avgSpeed")}</th>
              <th>{t("reports.trips")}</th>
            </tr>
          </thead>
          <tbody>
            {(report.data?.items ?? []).map((row) => (
              <tr key={row.vehicle_id}>
                <td>{names.get(row.vehicle_id) ?? row.vehicle_id.slice(0, 8)}</td>
                <td>{formatDistance(row.distance_m, lang)}</td>
                <td>{formatDuration(row.driving_s)}</td>
                <td>{formatDuration(row.idle_s)}</td>
                <td>{formatSpeed(row.max_speed_kph, lang)}</td>
                <td>{formatSpeed(row.avg_speed_kph, lang)}</td>
                <td>{row.trips}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </main>
  );
}
