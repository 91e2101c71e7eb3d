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

/** The org's active users (id, name, email) to pick alert recipients from; dispatchers and
 * admins may read it. */
export function useUserDirectory(enabled = true) {
  return useQuery({
    queryKey: ["users", "directory"],
    enabled,
    queryFn: async () =>
      unwrap(await api.GET("/api/v1/users/directory", { params: { query: { limit: 500 } } })).items,
  });
}
