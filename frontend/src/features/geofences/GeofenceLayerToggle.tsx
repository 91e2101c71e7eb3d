import { useTranslation } from "react-i18next";
import type { GeofenceLayer } from "./useGeofenceLayer";

export function GeofenceLayerToggle({ layer }: { layer: GeofenceLayer }) {
  const { t } = useTranslation();
  return (
    <label className="map-toggle card">
      <input
        type="checkbox"
        checked={layer.visible}
        onChange={(e) => layer.setVisible(e.target.checked)}
        data-testid="geofence-layer-toggle"
      />
      {t("geofences.layer")}
    </label>
  );
}
