import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api, unwrap } from "../../api/client";

/** Acknowledge one or many alerts (one request each: the API acknowledges one at a time). */
export function useAck() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: async (ids: string[]) => {
      for (const id of ids) {
        unwrap(
          await api.POST("/api/v1/alerts/{alert_id}/ack", { params: { path: { alert_id: id } } }),
        );
      }
    },
    onSettled: () => client.invalidateQueries({ queryKey: ["alerts"] }),
  });
}
