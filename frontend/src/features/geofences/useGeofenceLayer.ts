// The geofences as a toggleable map layer, on whichever map attaches it.
import type { GeoJSONSource, Map as MapLibreMap } from "maplibre-gl";
import { useCallback, useEffect, useRef, useState } from "react";
import { useGeofences } from "./api";
import { geofenceFeature } from "./geometry";

const LAYERS = ["geofence-fill", "geofence-line"] as const;

export interface GeofenceLayer {
  attach(map: MapLibreMap): void;
  visible: boolean;
  setVisible(visible: boolean): void;
}

/** `hiddenId`: a geofence left out (the one being edited, drawn by terra-draw instead). */
export function useGeofenceLayer(hiddenId: string | null = null): GeofenceLayer {
  const geofences = useGeofences();
  const [visible, setVisible] = useState(true);
  const mapRef = useRef<MapLibreMap | null>(null);
  const [attached, setAttached] = useState(0);

  const attach = useCallback((map: MapLibreMap) => {
    mapRef.current = map;
    map.addSource("geofences", {
      type: "geojson",
      data: { type: "FeatureCollection", features: [] },
    });
    const before = map.getLayer("clusters") ? "clusters" : undefined;
    map.addLayer(
      {
        id: "geofence-fill",
        type: "fill",
        source: "geofences",
        paint: { "fill-color": ["get", "colour"], "fill-opacity": 0.15 },
      },
      before,
    );
    map.addLayer(
      {
        id: "geofence-line",
        type: "line",
        source: "geofences",
        paint: { "line-color": ["get", "colour"], "line-width": 2 },
      },
      before,
    );
    setAttached((n) => n + 1);
  }, []);

  useEffect(() => {
    const source = mapRef.current?.getSource("geofences") as GeoJSONSource | undefined;
    if (!source) return;
    const features = (geofences.data ?? [])
      .filter((g) => g.id !== hiddenId)
      .map(geofenceFeature)
      .filter((f) => f !== null);
    source.setData({ type: "FeatureCollection", features });
  }, [geofences.data, attached, hiddenId]);

  useEffect(() => {
    const map = mapRef.current;
    if (!map) return;
    for (const id of LAYERS) {
      if (map.getLayer(id)) map.setLayoutProperty(id, "visibility", visible ? "visible" : "none");
    }
  }, [visible, attached]);

  return { attach, visible, setVisible };
}
