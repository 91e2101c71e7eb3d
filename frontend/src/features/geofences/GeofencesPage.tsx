// Geofences: the list, drawing new polygons and circles on the map (terra-draw), editing a
// saved one's shape, name and speed limit, delete.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import type { Map as MapLibreMap } from "maplibre-gl";
import type { Polygon } from "geojson";
import { useEffect, useRef, useState } from "react";
import { useTranslation } from "react-i18next";
import type { GeoJSONStoreFeatures, TerraDraw } from "terra-draw";
import { api, unwrap, type Schemas } from "../../api/client";
import { ProblemMessage } from "../../components/ProblemMessage";
import { formatSpeed } from "../../lib/format";
import { useCan } from "../auth/session";
import { fleet } from "../live/liveStore";
import { createMap } from "../map/baseMap";
import { useGeofences } from "./api";
import { createDraw } from "./drawing";
import { drawFeature, drawnGeometry, type DrawMode, type GeofenceGeometry } from "./drawnGeometry";
import { GeofenceLayerToggle } from "./GeofenceLayerToggle";
import { useGeofenceLayer } from "./useGeofenceLayer";

type Geofence = Schemas["GeofenceOut"];

function fitAll(map: MapLibreMap, points: Array<[number, number]>, maxZoom: number) {
  if (points.length === 0) return;
  const lons = points.map((p) => p[0]);
  const lats = points.map((p) => p[1]);
  map.fitBounds(
    [
      [Math.min(...lons), Math.min(...lats)],
      [Math.max(...lons), Math.max(...lats)],
    ],
    { padding: 60, maxZoom, duration: 0 },
  );
}

export default function GeofencesPage() {
  const { t, i18n } = useTranslation();
  const can = useCan();
  const client = useQueryClient();
  const geofences = useGeofences();
  const [editing, setEditing] = useState<string | null>(null);
  const [shapeEditable, setShapeEditable] = useState(true);
  // The shape being edited is drawn by terra-draw, not by the layer.
  const layer = useGeofenceLayer(shapeEditable ? editing : null);
  const container = useRef<HTMLDivElement>(null);
  const mapRef = useRef<MapLibreMap | null>(null);
  const drawRef = useRef<TerraDraw | null>(null);
  const [ready, setReady] = useState(false);
  const [mode, setMode] = useState<DrawMode | null>(null);
  // The shape to save: drawn, or edited (null while editing = the saved shape is kept).
  const [geometry, setGeometry] = useState<GeofenceGeometry | null>(null);
  const [name, setName] = useState("");
  const [speedLimit, setSpeedLimit] = useState("");
  const attach = layer.attach;

  useEffect(() => {
    let map: MapLibreMap | null = null;
    let disposed = false;
    void createMap(container.current as HTMLDivElement, { hash: true }).then((created) => {
      if (disposed) return created.remove();
      map = created;
      created.on("load", () => {
        attach(created);
        // A view in the URL (`#zoom/lat/lon`) wins over fitting the fleet.
        if (!window.location.hash) {
          fitAll(
            created,
            [...fleet.fixes.values()].map((f) => [f.lon, f.lat]),
            14,
          );
        }
        const draw = createDraw(created);
        // A shape drawn is selected at once so that it can be adjusted before saving; every
        // later edit (a vertex or the whole shape dragged, a circle resized) finishes too.
        draw.on("finish", (id, context) => {
          const feature = draw.getSnapshotFeature(id);
          if (!feature || feature.geometry.type !== "Polygon") return;
          setGeometry(drawnGeometry(String(feature.properties.mode), feature.geometry as Polygon));
          if (context.action === "draw") {
            draw.setMode("select");
            draw.selectFeature(id);
            setMode(null);
          }
        });
        drawRef.current = draw;
        mapRef.current = created;
        setReady(true);
      });
    });
    return () => {
      disposed = true;
      drawRef.current?.stop();
      drawRef.current = null;
      mapRef.current = null;
      map?.remove();
    };
  }, [attach]);

  const clearShape = () => {
    drawRef.current?.clear();
    drawRef.current?.setMode("static");
    setGeometry(null);
    setMode(null);
    setShapeEditable(true);
  };
  const startDrawing = (next: DrawMode) => {
    clearShape();
    if (editing) {
      setEditing(null);
      setName("");
      setSpeedLimit("");
    }
    drawRef.current?.setMode(next);
    setMode(next);
  };
  const startEditing = (geofence: Geofence) => {
    clearShape();
    setEditing(geofence.id);
    setName(geofence.name);
    setSpeedLimit(geofence.speed_limit_kph ? String(geofence.speed_limit_kph) : "");
    const draw = drawRef.current;
    const map = mapRef.current;
    const feature = drawFeature(geofence.geometry);
    const [loaded] =
      draw && feature ? draw.addFeatures([feature as unknown as GeoJSONStoreFeatures]) : [];
    if (!draw || !map || !feature || !loaded?.valid || loaded.id === undefined) {
      setShapeEditable(false);
      return;
    }
    draw.setMode("select");
    draw.selectFeature(loaded.id);
    fitAll(map, feature.geometry.coordinates[0] as Array<[number, number]>, 17);
  };
  const reset = () => {
    clearShape();
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
            disabled={!ready}
            aria-pressed={mode === "polygon"}
            data-testid="draw-polygon"
          >
            {t("geofences.drawPolygon")}
          </button>
          <button
            type="button"
            onClick={() => startDrawing("circle")}
            disabled={!ready}
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
          {!mode && (geometry || editing) ? (
            <p className="notice" data-testid="geofence-edit-hint">
              {shapeEditable ? t("geofences.editHint") : t("geofences.shapeNotEditable")}
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
                    onClick={() => startEditing(g)}
                    disabled={!ready}
                    aria-pressed={editing === g.id}
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
