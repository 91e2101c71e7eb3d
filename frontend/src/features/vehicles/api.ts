// Vehicles and drivers of the org, all pages (the API pages by at most 1,000).
import { useQuery } from "@tanstack/react-query";
import { api, unwrap, type Schemas, type VehicleOut } from "../../api/client";

const PAGE = 1000;

export async function allVehicles(): Promise<VehicleOut[]> {
  const out: VehicleOut[] = [];
  for (let offset = 0; ; offset += PAGE) {
    const page = unwrap(
      await api.GET("/api/v1/vehicles", { params: { query: { limit: PAGE, offset } } }),
    );
    out.push(...page.items);
    if (page.items.length < PAGE) return out;
  }
}

export function useVehicles() {
  return useQuery({ queryKey: ["vehicles"], queryFn: allVehicles, staleTime: 60_000 });
}

export async function allDrivers(): Promise<Schemas["DriverOut"][]> {
  const out: Schemas["DriverOut"][] = [];
  for (let offset = 0; ; offset += PAGE) {
    const page = unwrap(
      await api.GET("/api/v1/drivers", { params: { query: { limit: PAGE, offset } } }),
    );
    out.push(...page.items);
    if (page.items.length < PAGE) return out;
  }
}

export function useDrivers() {
  return useQuery({ queryKey: ["drivers"], queryFn: allDrivers, staleTime: 60_000 });
}
