// Alerts that arrived on the socket: toasts and the unread counter.
import { create } from "zustand";
import type { AlertOut } from "../../api/client";
import { queryClient } from "../../app/queryClient";

interface AlertFeed {
  toasts: AlertOut[];
  unread: number;
  dismiss(id: string): void;
  markAllRead(): void;
}

const MAX_TOASTS = 4;

export const useAlertFeed = create<AlertFeed>((set) => ({
  toasts: [],
  unread: 0,
  dismiss: (id) => set((s) => ({ toasts: s.toasts.filter((a) => a.id !== id) })),
  markAllRead: () => set({ unread: 0 }),
}));

function isAlert(raw: unknown): raw is AlertOut {
  if (typeof raw !== "object" || raw === null) return false;
  const alert = raw as Record<string, unknown>;
  return typeof alert.id === "string" && typeof alert.type === "string";
}

export function pushAlert(raw: unknown): void {
  if (!isAlert(raw)) return;
  useAlertFeed.setState((s) => ({
    toasts: [raw, ...s.toasts.filter((a) => a.id !== raw.id)].slice(0, MAX_TOASTS),
    unread: s.unread + 1,
  }));
  void queryClient.invalidateQueries({ queryKey: ["alerts"] });
}
