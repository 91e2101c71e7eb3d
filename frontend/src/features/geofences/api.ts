import { useQuery } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";

export function useGeofences() {
  return useQuery({
    queryKey: ["geofences"],
    queryFn: async () =>
      unwrap(await api.GET("/api/v1/geofences", { params: { query: { limit: 500 } } })).items,
  });
}
