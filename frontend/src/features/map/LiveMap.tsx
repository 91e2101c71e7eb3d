// The live map: vehicles as WebGL layers (heading arrows coloured by status, labels, clusters
// at low zoom), the selected vehicle in its own unclustered source so no cluster hides it,
// and a glide between fixes. One source update per animation frame at most.
import type { GeoJSONSource, Map as MapLibreMap } from "maplibre-gl";
import { useEffect, useRef } from "react";
import { useTranslation } from "react-i18next";
import type { Fix } from "../live/fleet";
import { debug, fleet, useLive } from "../live/liveStore";
import { createMap } from "./baseMap";
import {
  drawDelayMs,
  GLIDE_LIMIT,
  glidePosition,
  GLIDE_MS,
  STATUS_COLOURS,
  vehicleFeature,
  type Glide,
  type VehicleCollection,
} from "./vehicleFeatures";

const CLUSTER_MAX_ZOOM = 11;

function arrowImage(size: number): ImageData {
  const canvas = document.createElement("canvas");
  canvas.width = size;
  canvas.height = size;
  const c = canvas.getContext("2d") as CanvasRenderingContext2D;
  c.fillStyle = "#000";
  c.beginPath();
  c.moveTo(size / 2, 1);
  c.lineTo(size - 3, size - 2);
  c.lineTo(size / 2, size * 0.72);
  c.lineTo(3, size - 2);
  c.closePath();
  c.fill();
  return c.getImageData(0, 0, size, size);
}

function dotImage(size: number): ImageData {
  const canvas = document.createElement("canvas");
  canvas.width = size;
  canvas.height = size;
  const c = canvas.getContext("2d") as CanvasRenderingContext2D;
  c.fillStyle = "#000";
  c.beginPath();
  c.arc(size / 2, size / 2, size / 2 - 4, 0, Math.PI * 2);
  c.fill();
  return c.getImageData(0, 0, size, size);
}

const statusColour = [
  "match",
  ["get", "status"],
  "moving",
  STATUS_COLOURS.moving,
  "stopped",
  STATUS_COLOURS.stopped,
  STATUS_COLOURS.offline,
] as unknown as string;

function addVehicleLayers(map: MapLibreMap): void {
  const ratio = 2;
  if (!map.hasImage("arrow"))
    map.addImage("arrow", arrowImage(22 * ratio), { sdf: true, pixelRatio: ratio });
  if (!map.hasImage("dot"))
    map.addImage("dot", dotImage(18 * ratio), { sdf: true, pixelRatio: ratio });
  const empty: VehicleCollection = { type: "FeatureCollection", features: [] };
  map.addSource("vehicles", {
    type: "geojson",
    data: empty,
    cluster: true,
    clusterMaxZoom: CLUSTER_MAX_ZOOM,
    clusterRadius: 48,
  });
  map.addSource("selected", { type: "geojson", data: empty });
  map.addLayer({
    id: "clusters",
    type: "circle",
    source: "vehicles",
    filter: ["has", "point_count"],
    paint: {
      "circle-color": "#2b6cb0",
      "circle-opacity": 0.85,
      "circle-radius": ["step", ["get", "point_count"], 14, 50, 18, 500, 24],
      "circle-stroke-color": "#fff",
      "circle-stroke-width": 2,
    },
  });
  map.addLayer({
    id: "cluster-count",
    type: "symbol",
    source: "vehicles",
    filter: ["has", "point_count"],
    layout: {
      "icon-image": ["concat", "text:", ["get", "point_count_abbreviated"]],
      "icon-allow-overlap": true,
    },
  });
  const vehicleLayout = {
    "icon-image": ["case", ["get", "hasHeading"], "arrow", "dot"],
    "icon-rotate": ["get", "heading"],
    "icon-rotation-alignment": "map",
    "icon-allow-overlap": true,
    "icon-ignore-placement": true,
  } as const;
  map.addLayer({
    id: "vehicles",
    type: "symbol",
    source: "vehicles",
    filter: ["!", ["has", "point_count"]],
    layout: vehicleLayout as never,
    paint: { "icon-color": statusColour, "icon-halo-color": "#fff", "icon-halo-width": 1.5 },
  });
  map.addLayer({
    id: "vehicle-labels",
    type: "symbol",
    source: "vehicles",
    minzoom: 12,
    filter: ["!", ["has", "point_count"]],
    layout: {
      "icon-image": ["concat", "text:", ["get", "name"]],
      "icon-anchor": "top",
      "icon-offset": [0, 14],
      "icon-optional": true,
    },
  });
  map.addLayer({
    id: "selected-ring",
    type: "circle",
    source: "selected",
    paint: {
      "circle-radius": 16,
      "circle-color": "rgba(43,108,176,0.15)",
      "circle-stroke-color": "#2b6cb0",
      "circle-stroke-width": 2,
    },
  });
  map.addLayer({
    id: "selected-vehicle",
    type: "symbol",
    source: "selected",
    layout: vehicleLayout as never,
    paint: { "icon-color": statusColour, "icon-halo-color": "#fff", "icon-halo-width": 1.5 },
  });
  map.addLayer({
    id: "selected-label",
    type: "symbol",
    source: "selected",
    layout: {
      "icon-image": ["concat", "text:", ["get", "name"]],
      "icon-anchor": "top",
      "icon-offset": [0, 16],
      "icon-allow-overlap": true,
    },
  });
}

interface Props {
  names: ReadonlyMap<string, string>;
  onMap?: (map: MapLibreMap) => void;
}

export function LiveMap({ names, onMap }: Props) {
  const { t } = useTranslation();
  const container = useRef<HTMLDivElement>(null);
  const namesRef = useRef(names);
  namesRef.current = names;
  const onMapRef = useRef(onMap);
  onMapRef.current = onMap;
  const mapRef = useRef<MapLibreMap | null>(null);

  useEffect(() => {
    let disposed = false;
    let map: MapLibreMap | null = null;
    const glides = new Map<string, Glide>();
    let frame = 0;
    /** Whether the selected source holds a vehicle (it starts empty). */
    let selectedShown = false;
    let unsubscribe = () => {};

    const nameOf = (fix: Fix) => namesRef.current.get(fix.key) ?? fix.key.slice(0, 8);

    const draw = () => {
      frame = 0;
      if (!map || !map.getSource("vehicles")) return;
      const now = Date.now();
      lastDrawMs = now;
      const selectedKey = useLive.getState().selectedKey;
      const features = [];
      let selected = null;
      let gliding = false;
      for (const fix of fleet.fixes.values()) {
        const glide = glides.get(fix.key);
        let coordinates: [number, number] = [fix.lon, fix.lat];
        if (glide) {
          coordinates = glidePosition(glide, now);
          if (now - glide.startMs >= GLIDE_MS) glides.delete(fix.key);
          else gliding = true;
        }
        const feature = vehicleFeature(fix, nameOf(fix), now, coordinates);
        features.push(feature);
        if (fix.key === selectedKey) selected = feature;
      }
      (map.getSource("vehicles") as GeoJSONSource).setData({ type: "FeatureCollection", features });
      // An empty selection is not re-sent: every setData reloads the source's tiles and
      // repaints the map.
      if (selected || selectedShown) {
        (map.getSource("selected") as GeoJSONSource).setData({
          type: "FeatureCollection",
          features: selected ? [selected] : [],
        });
        selectedShown = selected !== null;
      }
      debug.vehiclesDrawn = features.length;
      debug.sourceUpdates += 1;
      const { follow } = useLive.getState();
      if (selected && follow)
        map.easeTo({ center: selected.geometry.coordinates as [number, number], duration: 300 });
      if (gliding) frame = requestAnimationFrame(draw);
    };
    let lastDrawMs = 0;
    let delayed: ReturnType<typeof setTimeout> | undefined;
    /** `immediately`: a selection change, shown at the next frame however big the fleet. */
    const requestDraw = (immediately = false) => {
      if (frame) return;
      const waitMs = immediately ? 0 : drawDelayMs(fleet.fixes.size, lastDrawMs, Date.now());
      if (waitMs > 0) {
        delayed ??= setTimeout(() => {
          delayed = undefined;
          frame = requestAnimationFrame(draw);
        }, waitMs);
        return;
      }
      // A selection does not wait for a pending update.
      clearTimeout(delayed);
      delayed = undefined;
      frame = requestAnimationFrame(draw);
    };

    void createMap(container.current as HTMLDivElement).then((created) => {
      if (disposed) {
        created.remove();
        return;
      }
      map = created;
      mapRef.current = created;
      const setUp = () => {
        if (map?.getSource("vehicles")) return;
        addVehicleLayers(created);
        onMapRef.current?.(created);
        requestDraw();
      };
      created.on("style.load", setUp);
      if (created.isStyleLoaded()) setUp();
      created.on("click", "clusters", (event) => {
        const feature = event.features?.[0];
        const clusterId = feature?.properties?.cluster_id as number | undefined;
        if (clusterId === undefined || feature?.geometry.type !== "Point") return;
        void (created.getSource("vehicles") as GeoJSONSource)
          .getClusterExpansionZoom(clusterId)
          .then((zoom) =>
            created.easeTo({
              center:
                feature.geometry.type === "Point"
                  ? (feature.geometry.coordinates as [number, number])
                  : created.getCenter(),
              zoom,
            }),
          );
      });
      for (const layer of ["vehicles", "selected-vehicle"]) {
        created.on("click", layer, (event) => {
          const key = event.features?.[0]?.properties?.key as string | undefined;
          if (key) useLive.getState().select(key, false);
        });
        created.on("mouseenter", layer, () => (created.getCanvas().style.cursor = "pointer"));
        created.on("mouseleave", layer, () => (created.getCanvas().style.cursor = ""));
      }
      created.on("dragstart", () => useLive.getState().setFollow(false));
      let fitted = false;
      unsubscribe = fleet.subscribe(({ changed, snapshot }) => {
        if (fleet.fixes.size <= GLIDE_LIMIT) {
          const now = Date.now();
          for (const key of changed) {
            const fix = fleet.fixes.get(key);
            const previous = glides.get(key);
            const drawnAt = previous ? glidePosition(previous, now) : null;
            const from = drawnAt ?? lastDrawn.get(key);
            if (fix && from) {
              glides.set(key, {
                fromLon: from[0],
                fromLat: from[1],
                toLon: fix.lon,
                toLat: fix.lat,
                startMs: now,
              });
            }
            if (fix) lastDrawn.set(key, [fix.lon, fix.lat]);
          }
        }
        if (!fitted && fleet.fixes.size > 0) {
          fitted = true;
          fitToFleet(created);
        }
        if (!snapshot) {
          requestDraw();
          return;
        }
        // A snapshot holds the whole fleet: drawn now, in the frame the fleet flushed in (not a
        // frame later, nor at the next turn).
        cancelAnimationFrame(frame);
        clearTimeout(delayed);
        delayed = undefined;
        draw();
      });
      if (fleet.fixes.size > 0) {
        fitted = true;
        fitToFleet(created);
      }
    });
    const lastDrawn = new Map<string, [number, number]>();
    const unsubscribeSelection = useLive.subscribe((state, previous) => {
      if (state.selectedKey !== previous.selectedKey || state.follow !== previous.follow) {
        requestDraw(true);
      }
      if (state.selectedKey && state.selectedKey !== previous.selectedKey && state.follow && map) {
        const fix = fleet.fixes.get(state.selectedKey);
        if (fix)
          map.easeTo({
            center: [fix.lon, fix.lat],
            zoom: Math.max(map.getZoom(), CLUSTER_MAX_ZOOM + 2),
          });
      }
    });
    return () => {
      disposed = true;
      unsubscribe();
      unsubscribeSelection();
      cancelAnimationFrame(frame);
      clearTimeout(delayed);
      map?.remove();
      mapRef.current = null;
    };
  }, []);

  return (
    <div
      ref={container}
      className="map"
      data-testid="map"
      role="region"
      aria-label={t("map.label")}
    />
  );
}

function fitToFleet(map: MapLibreMap): void {
  let west = 180;
  let east = -180;
  let south = 90;
  let north = -90;
  for (const fix of fleet.fixes.values()) {
    west = Math.min(west, fix.lon);
    east = Math.max(east, fix.lon);
    south = Math.min(south, fix.lat);
    north = Math.max(north, fix.lat);
  }
  map.fitBounds(
    [
      [west, south],
      [east, north],
    ],
    { padding: 60, maxZoom: 14, duration: 0 },
  );
}
