// Geofences: the list, drawing new polygons and circles on the map (terra-draw), name and
// speed limit, edit, delete.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import type { Map as MapLibreMap } from "maplibre-gl";
import type { Polygon } from "geojson";
import { useEffect, useRef, useState } from "react";
import { useTranslation } from "react-i18next";
import { TerraDraw, TerraDrawCircleMode, TerraDrawPolygonMode } from "terra-draw";
import { TerraDrawMapLibreGLAdapter } from "terra-draw-maplibre-gl-adapter";
import { api, unwrap } from "../../api/client";
import { ProblemMessage } from "../../components/ProblemMessage";
import { formatSpeed } from "../../lib/format";
import { useCan } from "../auth/session";
import { fleet } from "../live/liveStore";
import { createMap } from "../map/baseMap";
import { useGeofences } from "./api";
import { drawnGeometry, type GeofenceGeometry } from "./drawnGeometry";
import { GeofenceLayerToggle } from "./GeofenceLayerToggle";
import { useGeofenceLayer } from "./useGeofenceLayer";

type Mode = "polygon" | "circle";

export default function GeofencesPage() {
  const { t, i18n } = useTranslation();
  const can = useCan();
  const client = useQueryClient();
  const geofences = useGeofences();
  const layer = useGeofenceLayer();
  const container = useRef<HTMLDivElement>(null);
  const drawRef = useRef<TerraDraw | null>(null);
  const [mode, setMode] = useState<Mode | null>(null);
  const [geometry, setGeometry] = useState<GeofenceGeometry | null>(null);
  const [name, setName] = useState("");
  const [speedLimit, setSpeedLimit] = useState("");
  const [editing, setEditing] = useState<string | null>(null);
  const attach = layer.attach;

  useEffect(() => {
    let map: MapLibreMap | null = null;
    let disposed = false;
    void createMap(container.current as HTMLDivElement).then((created) => {
      if (disposed) return created.remove();
      map = created;
      created.on("load", () => {
        attach(created);
        const fixes = [...fleet.fixes.values()];
        if (fixes.length > 0) {
          const lons = fixes.map((f) => f.lon);
          const lats = fixes.map((f) => f.lat);
          created.fitBounds(
            [
              [Math.min(...lons), Math.min(...lats)],
              [Math.max(...lons), Math.max(...lats)],
            ],
            { padding: 60, maxZoom: 14, duration: 0 },
          );
        }
        const draw = new TerraDraw({
          adapter: new TerraDrawMapLibreGLAdapter({ map: created }),
          modes: [new TerraDrawPolygonMode(), new TerraDrawCircleMode()],
        });
        draw.start();
        draw.on("finish", (id) => {
          const feature = draw.getSnapshotFeature(id);
          if (!feature || feature.geometry.type !== "Polygon") return;
          const drawn = drawnGeometry(
            String(feature.properties.mode),
            feature.geometry as Polygon,
            feature.properties as Record<string, unknown>,
          );
          setGeometry(drawn);
          draw.setMode("static");
          setMode(null);
        });
        drawRef.current = draw;
      });
    });
    return () => {
      disposed = true;
      drawRef.current?.stop();
      drawRef.current = null;
      map?.remove();
    };
  }, [attach]);

  const startDrawing = (next: Mode) => {
    const draw = drawRef.current;
    if (!draw) return;
    draw.clear();
    setGeometry(null);
    setEditing(null);
    draw.setMode(next);
    setMode(next);
  };
  const reset = () => {
    drawRef.current?.clear();
    drawRef.current?.setMode("static");
    setGeometry(null);
    setMode(null);
    setName("");
    setSpeedLimit("");
    setEditing(null);
  };
  const speed = speedLimit.trim() === "" ? null : Number(speedLimit);
  const save = useMutation({
    mutationFn: async () => {
      if (editing) {
        unwrap(
          await api.PATCH("/api/v1/geofences/{geofence_id}", {
            params: { path: { geofence_id: editing } },
            body: { name, speed_limit_kph: speed, ...(geometry ? { geometry } : {}) },
          }),
        );
      } else if (geometry) {
        unwrap(
          await api.POST("/api/v1/geofences", {
            body: { name, geometry, speed_limit_kph: speed, colour: "#2b6cb0", active: true },
          }),
        );
      }
    },
    onSuccess: () => {
      reset();
      void client.invalidateQueries({ queryKey: ["geofences"] });
    },
  });
  const remove = useMutation({
    mutationFn: async (id: string) =>
      unwrap(
        await api.DELETE("/api/v1/geofences/{geofence_id}", {
          params: { path: { geofence_id: id } },
        }),
      ),
    onSuccess: () => void client.invalidateQueries({ queryKey: ["geofences"] }),
  });

  return (
    <main className="page geofences-page">
      <h1>{t("geofences.title")}</h1>
      {can.edit ? (
        <form
          className="form card"
          onSubmit={(e) => {
            e.preventDefault();
            save.mutate();
          }}
          data-testid="geofence-form"
        >
          <button
            type="button"
            onClick={() => startDrawing("polygon")}
            aria-pressed={mode === "polygon"}
            data-testid="draw-polygon"
          >
            {t("geofences.drawPolygon")}
          </button>
          <button
            type="button"
            onClick={() => startDrawing("circle")}
            aria-pressed={mode === "circle"}
            data-testid="draw-circle"
          >
            {t("geofences.drawCircle")}
          </button>
          <label>
            {t("common.name")}
            <input
              required
              value={name}
              onChange={(e) => setName(e.target.value)}
              data-testid="geofence-name"
            />
          </label>
          <label>
            {t("geofences.speedLimit")}
            <input
              type="number"
              min={1}
              max={400}
              value={speedLimit}
              onChange={(e) => setSpeedLimit(e.target.value)}
              data-testid="geofence-speed-limit"
            />
          </label>
          <button
            type="submit"
            className="primary"
            disabled={(!geometry && !editing) || save.isPending}
            data-testid="geofence-save"
          >
            {t("common.save")}
          </button>
          <button type="button" onClick={reset}>
            {t("common.cancel")}
          </button>
          {mode ? (
            <p className="notice">
              {mode === "circle" ? t("geofences.circleHint") : t("geofences.drawHint")}
            </p>
          ) : null}
          <ProblemMessage error={save.error ?? remove.error} />
        </form>
      ) : null}
      <div className="geofence-layout">
        <div className="history-map card">
          <div
            ref={container}
            className="map"
            data-testid="geofence-map"
            role="region"
            aria-label={t("map.label")}
          />
          <GeofenceLayerToggle layer={layer} />
        </div>
        <ul className="geofence-list card" data-testid="geofence-list">
          {(geofences.data ?? []).length === 0 ? (
            <li className="empty">{t("geofences.none")}</li>
          ) : null}
          {(geofences.data ?? []).map((g) => (
            <li key={g.id} data-testid="geofence-row" data-geofence-id={g.id}>
              <span className="dot" style={{ background: g.colour }} aria-hidden="true" />
              <span className="row-main">
                <span className="row-name">{g.name}</span>
                <span className="row-sub">
                  {String(g.geometry.type)}
                  {g.speed_limit_kph ? ` · ${formatSpeed(g.speed_limit_kph, i18n.language)}` : ""}
                </span>
              </span>
              {can.edit ? (
                <>
                  <button
                    type="button"
                    onClick={() => {
                      setEditing(g.id);
                      setName(g.name);
                      setSpeedLimit(g.speed_limit_kph ? String(g.speed_limit_kph) : "");
                    }}
                    data-testid="geofence-edit"
                  >
                    {t("common.edit")}
                  </button>
                  <button
                    type="button"
                    onClick={() => {
                      if (window.confirm(t("geofences.confirmDelete", { name: g.name })))
                        remove.mutate(g.id);
                    }}
                    data-testid="geofence-delete"
                  >
                    {t("common.delete")}
                  </button>
                </>
              ) : null}
            </li>
          ))}
        </ul>
      </div>
    </main>
  );
}
