// A vehicle's history: the route coloured by speed, stops marked, a replay with a scrubber and
// a speed chart under it, exports in the API's formats, and the trips and stops tables.
import { useQuery } from "@tanstack/react-query";
import maplibregl, { type GeoJSONSource, type Map as MapLibreMap } from "maplibre-gl";
import { useEffect, useMemo, useRef, useState } from "react";
import { useTranslation } from "react-i18next";
import { useParams, useSearchParams } from "react-router-dom";
import { api, download, unwrap } from "../../api/client";
import { ProblemMessage } from "../../components/ProblemMessage";
import {
  formatDateTime,
  formatDistance,
  formatDuration,
  formatSpeed,
  toLocalInput,
} from "../../lib/format";
import { createMap } from "../map/baseMap";
import { type HistoryHead, HistoryNotices } from "./HistoryNotices";
import { useVehicles } from "../vehicles/api";
import {
  advance,
  indexAt,
  parseTrack,
  positionAt,
  rangeAllows,
  RATES,
  routePoints,
  routeSegments,
  type TrackPoint,
} from "./replay";

const MAX_POINTS = 5000;
const EMPTY = { type: "FeatureCollection" as const, features: [] };

function SpeedChart({ points, currentMs }: { points: readonly TrackPoint[]; currentMs: number }) {
  const first = points[0];
  const last = points[points.length - 1];
  if (!first || !last || last.tMs === first.tMs) return null;
  const span = last.tMs - first.tMs;
  const top = Math.max(10, ...points.map((p) => p.speedKph ?? 0));
  const step = Math.max(1, Math.floor(points.length / 800));
  const line = points
    .filter((_, i) => i % step === 0)
    .map(
      (p) =>
        `${(((p.tMs - first.tMs) / span) * 1000).toFixed(1)},${(60 - ((p.speedKph ?? 0) / top) * 58).toFixed(1)}`,
    )
    .join(" ");
  const x = ((currentMs - first.tMs) / span) * 1000;
  return (
    <svg
      className="speed-chart"
      viewBox="0 0 1000 60"
      preserveAspectRatio="none"
      aria-hidden="true"
      data-testid="speed-chart"
    >
      <polyline
        points={line}
        fill="none"
        stroke="#2b6cb0"
        strokeWidth="1.5"
        vectorEffect="non-scaling-stroke"
      />
      <line
        x1={x}
        x2={x}
        y1={0}
        y2={60}
        stroke="#c0392b"
        strokeWidth="2"
        vectorEffect="non-scaling-stroke"
      />
    </svg>
  );
}

export default function HistoryPage() {
  const { t, i18n } = useTranslation();
  const { vehicleId = "" } = useParams();
  const [params, setParams] = useSearchParams();
  const vehicles = useVehicles();
  // The default range (the last 24 hours) is fixed when the page opens: a moving "now" would
  // make every render a new query.
  const [openedAtMs] = useState(() => Date.now());
  const fromMs = params.get("from")
    ? Date.parse(params.get("from") as string)
    : openedAtMs - 86_400_000;
  const toMs = params.get("to") ? Date.parse(params.get("to") as string) : openedAtMs;
  const [fromInput, setFromInput] = useState(toLocalInput(fromMs));
  const [toInput, setToInput] = useState(toLocalInput(toMs));
  const tab = params.get("tab") ?? "route";
  const allows = rangeAllows(fromMs, toMs);
  const tooLong = !allows.replay;
  const range = { from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString() };
  const vehicle = vehicles.data?.find((v) => v.id === vehicleId);

  const history = useQuery({
    queryKey: ["history", vehicleId, range.from, range.to],
    enabled: !tooLong,
    queryFn: async () => {
      const raw = unwrap(
        await api.GET("/api/v1/vehicles/{vehicle_id}/history", {
          params: { path: { vehicle_id: vehicleId }, query: { ...range, max_points: MAX_POINTS } },
        }),
      ) as { downsampled?: boolean; total_points?: number; sampling?: string };
      const head: HistoryHead = {
        downsampled: !!raw.downsampled,
        sampling: raw.sampling === "hourly" ? "hourly" : null,
        total: raw.total_points ?? null,
      };
      return { points: parseTrack(raw), head };
    },
  });
  const stops = useQuery({
    queryKey: ["stops", vehicleId, range.from, range.to],
    enabled: !tooLong,
    queryFn: async () =>
      unwrap(
        await api.GET("/api/v1/vehicles/{vehicle_id}/stops", {
          params: { path: { vehicle_id: vehicleId }, query: range },
        }),
      ).items,
  });
  const trips = useQuery({
    queryKey: ["trips", vehicleId, range.from, range.to],
    enabled: !tooLong && tab === "trips",
    queryFn: async () =>
      unwrap(
        await api.GET("/api/v1/vehicles/{vehicle_id}/trips", {
          params: { path: { vehicle_id: vehicleId }, query: range },
        }),
      ).items,
  });

  const points = useMemo(() => history.data?.points ?? [], [history.data]);
  const startMs = points[0]?.tMs ?? fromMs;
  const endMs = points[points.length - 1]?.tMs ?? toMs;
  const [currentMs, setCurrentMs] = useState(startMs);
  const [playing, setPlaying] = useState(false);
  const [rate, setRate] = useState<number>(RATES[2]);
  const [follow, setFollow] = useState(true);
  const [exportError, setExportError] = useState<unknown>(null);
  const container = useRef<HTMLDivElement>(null);
  const mapRef = useRef<MapLibreMap | null>(null);
  const [mapReady, setMapReady] = useState(false);

  useEffect(() => setCurrentMs(startMs), [startMs]);

  useEffect(() => {
    let map: MapLibreMap | null = null;
    let disposed = false;
    void createMap(container.current as HTMLDivElement).then((created) => {
      if (disposed) return created.remove();
      map = created;
      mapRef.current = created;
      created.on("load", () => {
        created.addSource("route", { type: "geojson", data: EMPTY });
        created.addSource("route-points", { type: "geojson", data: EMPTY });
        created.addSource("stops", { type: "geojson", data: EMPTY });
        created.addSource("cursor", { type: "geojson", data: EMPTY });
        created.addLayer({
          id: "route",
          type: "line",
          source: "route",
          paint: { "line-color": ["get", "colour"], "line-width": 4 },
          layout: { "line-cap": "round" },
        });
        created.addLayer({
          id: "route-points",
          type: "circle",
          source: "route-points",
          minzoom: 13,
          paint: {
            "circle-radius": 3,
            "circle-color": "#fff",
            "circle-stroke-color": "#555",
            "circle-stroke-width": 1,
          },
        });
        created.addLayer({
          id: "stops",
          type: "circle",
          source: "stops",
          paint: {
            "circle-radius": 7,
            "circle-color": "#c0392b",
            "circle-stroke-color": "#fff",
            "circle-stroke-width": 2,
          },
        });
        created.addLayer({
          id: "cursor",
          type: "circle",
          source: "cursor",
          paint: {
            "circle-radius": 8,
            "circle-color": "#2b6cb0",
            "circle-stroke-color": "#fff",
            "circle-stroke-width": 3,
          },
        });
        created.on("click", "route-points", (event) => {
          const props = event.features?.[0]?.properties;
          if (!props) return;
          setCurrentMs(props.t as number);
          new maplibregl.Popup({ closeButton: true })
            .setLngLat(event.lngLat)
            .setText(
              t("history.pointAt", {
                time: formatDateTime(props.t as number, i18n.language),
                speed: formatSpeed(props.speed as number | null, i18n.language),
              }),
            )
            .addTo(created);
        });
        setMapReady(true);
      });
    });
    return () => {
      disposed = true;
      map?.remove();
      mapRef.current = null;
    };
  }, [t, i18n.language]);

  useEffect(() => {
    const map = mapRef.current;
    if (!map || !mapReady) return;
    (map.getSource("route") as GeoJSONSource).setData(routeSegments(points));
    (map.getSource("route-points") as GeoJSONSource).setData(routePoints(points));
    if (points.length > 0) {
      const bounds = new maplibregl.LngLatBounds();
      for (const p of points) bounds.extend([p.lon, p.lat]);
      map.fitBounds(bounds, { padding: 40, maxZoom: 15, duration: 0 });
    }
  }, [points, mapReady]);

  useEffect(() => {
    const map = mapRef.current;
    if (!map || !mapReady) return;
    (map.getSource("stops") as GeoJSONSource).setData({
      type: "FeatureCollection",
      features: (stops.data ?? []).map((s) => ({
        type: "Feature",
        geometry: { type: "Point", coordinates: [s.place.lon, s.place.lat] },
        properties: {},
      })),
    });
  }, [stops.data, mapReady]);

  const cursor = positionAt(points, currentMs);
  useEffect(() => {
    const map = mapRef.current;
    if (!map || !mapReady || !cursor) return;
    (map.getSource("cursor") as GeoJSONSource).setData({
      type: "Feature",
      geometry: { type: "Point", coordinates: [cursor.lon, cursor.lat] },
      properties: {},
    });
    if (follow && playing) map.jumpTo({ center: [cursor.lon, cursor.lat] });
  }, [cursor, mapReady, follow, playing]);

  useEffect(() => {
    if (!playing) return;
    let last = performance.now();
    let frame = requestAnimationFrame(function tick(nowFrame) {
      const elapsed = nowFrame - last;
      last = nowFrame;
      setCurrentMs((ms) => {
        const next = advance(ms, elapsed, rate, endMs);
        if (next >= endMs) setPlaying(false);
        return next;
      });
      frame = requestAnimationFrame(tick);
    });
    return () => cancelAnimationFrame(frame);
  }, [playing, rate, endMs]);

  const step = (by: number) => {
    const i = indexAt(points, currentMs);
    const target = points[Math.min(points.length - 1, Math.max(0, i + by))];
    if (target) setCurrentMs(target.tMs);
  };
  const apply = () => {
    const next = new URLSearchParams(params);
    next.set("from", new Date(fromInput).toISOString());
    next.set("to", new Date(toInput).toISOString());
    setParams(next);
  };
  const exportAs = (format: "gpx" | "csv" | "geojson") => {
    setExportError(null);
    const query = new URLSearchParams({ ...range, format });
    download(
      `/api/v1/vehicles/${vehicleId}/history?${query.toString()}`,
      `history-${vehicle?.name ?? vehicleId}.${format}`,
    ).catch(setExportError);
  };
  const setTab = (name: string) => {
    const next = new URLSearchParams(params);
    next.set("tab", name);
    setParams(next, { replace: true });
  };
  const lang = i18n.language;

  return (
    <main className="page history-page">
      <h1>
        {t("history.title")}: {vehicle?.name ?? vehicleId.slice(0, 8)}
      </h1>
      <form
        className="filters"
        onSubmit={(e) => {
          e.preventDefault();
          apply();
        }}
      >
        <label>
          {t("common.from")}
          <input
            type="datetime-local"
            value={fromInput}
            onChange={(e) => setFromInput(e.target.value)}
            data-testid="history-from"
          />
        </label>
        <label>
          {t("common.to")}
          <input
            type="datetime-local"
            value={toInput}
            onChange={(e) => setToInput(e.target.value)}
            data-testid="history-to"
          />
        </label>
        <button type="submit" data-testid="history-apply">
          {t("common.apply")}
        </button>
        <span className="export" role="group" aria-label={t("history.export")}>
          {(["gpx", "csv", "geojson"] as const).map((f) => (
            <button
              key={f}
              type="button"
              onClick={() => exportAs(f)}
              disabled={!allows.export}
              data-testid={`export-${f}`}
            >
              {t("history.export")} {f.toUpperCase()}
            </button>
          ))}
        </span>
      </form>
      <HistoryNotices fromMs={fromMs} toMs={toMs} head={history.data?.head} shown={points.length} />
      <ProblemMessage error={history.error ?? exportError} />
      {history.isSuccess && points.length === 0 ? (
        <p className="empty" data-testid="history-empty">
          {t("history.empty")}
        </p>
      ) : null}
      <div className="tabs" role="tablist">
        {["route", "trips", "stops"].map((name) => (
          <button
            key={name}
            type="button"
            role="tab"
            aria-selected={tab === name}
            onClick={() => setTab(name)}
            data-testid={`tab-${name}`}
          >
            {t(`history.${name}`)}
          </button>
        ))}
      </div>
      <div className="history-map card" hidden={tab !== "route"}>
        <div
          ref={container}
          className="map"
          data-testid="history-map"
          role="region"
          aria-label={t("map.label")}
        />
      </div>
      {tab === "route" ? (
        <div className="replay card" data-testid="replay-controls" data-points={points.length}>
          <div className="replay-buttons">
            <button
              type="button"
              onClick={() => step(-1)}
              aria-label={t("history.stepBack")}
              data-testid="replay-step-back"
            >
              ⏮
            </button>
            <button
              type="button"
              className="primary"
              onClick={() => {
                if (currentMs >= endMs) setCurrentMs(startMs);
                setPlaying(!playing);
              }}
              disabled={points.length < 2}
              data-testid="replay-play"
              aria-pressed={playing}
            >
              {playing ? t("history.pause") : t("history.play")}
            </button>
            <button
              type="button"
              onClick={() => step(1)}
              aria-label={t("history.stepForward")}
              data-testid="replay-step-forward"
            >
              ⏭
            </button>
            <label>
              {t("history.speed")}{" "}
              <select
                value={rate}
                onChange={(e) => setRate(Number(e.target.value))}
                data-testid="replay-rate"
              >
                {RATES.map((r) => (
                  <option key={r} value={r}>
                    ×{r}
                  </option>
                ))}
              </select>
            </label>
            <label className="inline">
              <input
                type="checkbox"
                checked={follow}
                onChange={(e) => setFollow(e.target.checked)}
              />
              {t("panel.follow")}
            </label>
            <span data-testid="replay-time">
              {cursor
                ? `${formatDateTime(cursor.tMs, lang)} · ${formatSpeed(cursor.speedKph, lang)}`
                : "—"}
            </span>
          </div>
          <input
            type="range"
            className="scrubber"
            min={startMs}
            max={endMs}
            step={1000}
            value={currentMs}
            onChange={(e) => setCurrentMs(Number(e.target.value))}
            aria-label={t("history.scrubber")}
            data-testid="replay-scrubber"
            disabled={points.length < 2}
          />
          <SpeedChart points={points} currentMs={currentMs} />
        </div>
      ) : null}
      {tab === "trips" ? (
        <div className="table-wrap">
          <ProblemMessage error={trips.error} />
          <table data-testid="trips-table">
            <thead>
              <tr>
                <th>{t("history.start")}</th>
                <th>{t("history.end")}</th>
                <th>{t("history.duration")}</th>
                <th>{t("history.distance")}</th>
                <th>{t("history.maxSpeed")}</th>
                <th>{t("history.avgSpeed")}</th>
              </tr>
            </thead>
            <tbody>
              {(trips.data ?? []).map((trip) => (
                <tr key={trip.start_time}>
                  <td>{formatDateTime(trip.start_time, lang)}</td>
                  <td>{formatDateTime(trip.end_time, lang)}</td>
                  <td>{formatDuration(trip.duration_s)}</td>
                  <td>{formatDistance(trip.distance_m, lang)}</td>
                  <td>{formatSpeed(trip.max_speed_kph, lang)}</td>
                  <td>{formatSpeed(trip.avg_speed_kph, lang)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {tab === "stops" ? (
        <div className="table-wrap">
          <ProblemMessage error={stops.error} />
          <table data-testid="stops-table">
            <thead>
              <tr>
                <th>{t("history.start")}</th>
                <th>{t("history.end")}</th>
                <th>{t("history.duration")}</th>
                <th>{t("history.place")}</th>
              </tr>
            </thead>
            <tbody>
              {(stops.data ?? []).map((stop) => (
                <tr key={stop.start_time}>
                  <td>{formatDateTime(stop.start_time, lang)}</td>
                  <td>{formatDateTime(stop.end_time, lang)}</td>
                  <td>{formatDuration(stop.duration_s)}</td>
                  <td>
                    {stop.place.lat.toFixed(5)}, {stop.place.lon.toFixed(5)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </main>
  );
}
