import { useMemo } from "react";
import { useTranslation } from "react-i18next";
import { ProblemMessage } from "../components/ProblemMessage";
import { GeofenceLayerToggle } from "../features/geofences/GeofenceLayerToggle";
import { useGeofenceLayer } from "../features/geofences/useGeofenceLayer";
import { LiveMap } from "../features/map/LiveMap";
import { useVehicles } from "../features/vehicles/api";
import { VehicleList } from "../features/vehicles/VehicleList";
import { VehiclePanel } from "../features/vehicles/VehiclePanel";

export function LiveView() {
  const { t } = useTranslation();
  const vehicles = useVehicles();
  const list = useMemo(() => vehicles.data ?? [], [vehicles.data]);
  const names = useMemo(() => new Map(list.map((v) => [v.id, v.name])), [list]);
  const geofences = useGeofenceLayer();
  return (
    <main className="live-view">
      <h1 className="visually-hidden">{t("nav.live")}</h1>
      <div className="side">
        <ProblemMessage error={vehicles.error} />
        <VehicleList vehicles={list} />
      </div>
      <div className="map-wrap">
        <LiveMap names={names} onMap={geofences.attach} />
        <GeofenceLayerToggle layer={geofences} />
        <VehiclePanel vehicles={list} />
      </div>
    </main>
  );
}
