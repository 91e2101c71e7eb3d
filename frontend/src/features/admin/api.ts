import { useQuery } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";

/** The org's users; only admins may list them (`enabled` false for anyone else). */
export function useUsers(enabled = true) {
  return useQuery({
    queryKey: ["users"],
    enabled,
    queryFn: async () =>
      unwrap(await api.GET("/api/v1/users", { params: { query: { limit: 200 } } })).items,
  });
}
