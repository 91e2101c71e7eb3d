// The app's live state: one fleet (fed by the socket controller), the link state, the
// selected vehicle. Debugging hooks for tests are on window.__fleet (see README).
import { create } from "zustand";
import { FleetState } from "./fleet";
import type { LinkState } from "./socket";

export const fleet = new FleetState();

interface LiveUi {
  link: LinkState;
  selectedKey: string | null;
  follow: boolean;
  /** Bumped at most once a second for React views (the list, counts) that need no more. */
  tick: number;
  select(key: string | null, follow?: boolean): void;
  setFollow(follow: boolean): void;
}

export const useLive = create<LiveUi>((set) => ({
  link: "connecting",
  selectedKey: null,
  follow: false,
  tick: 0,
  select: (key, follow = true) => set({ selectedKey: key, follow: key !== null && follow }),
  setFollow: (follow) => set({ follow }),
}));

export interface FleetDebug {
  /** Vehicles in the map's source at its last update. */
  vehiclesDrawn: number;
  /** Map source updates so far (at most one per frame). */
  sourceUpdates: number;
  /** Fleet store flushes and socket messages so far. */
  flushes: () => number;
  messages: number;
  link: () => LinkState;
  selected: () => string | null;
}

declare global {
  interface Window {
    __fleet?: FleetDebug;
  }
}

export const debug: FleetDebug = {
  vehiclesDrawn: 0,
  sourceUpdates: 0,
  flushes: () => fleet.flushes,
  messages: 0,
  link: () => useLive.getState().link,
  selected: () => useLive.getState().selectedKey,
};
window.__fleet = debug;

// The tick: at most once a second, and at the end of a second that had changes (not at the
// next one's first change, or the 5 s refresh); at once for a snapshot of the latest positions
// (sign-in, a reconnection), which the list must show without waiting out the second.
let lastTick = 0;
let trailing: ReturnType<typeof setTimeout> | undefined;
function tick(): void {
  clearTimeout(trailing);
  trailing = undefined;
  lastTick = Date.now();
  useLive.setState((s) => ({ tick: s.tick + 1 }));
}
fleet.subscribe(({ snapshot }) => {
  const waitMs = snapshot ? 0 : lastTick + 1000 - Date.now();
  if (waitMs <= 0) tick();
  else trailing ??= setTimeout(tick, waitMs);
});
// Statuses age (moving → offline) without new fixes; views refresh on this tick too.
setInterval(tick, 5000);
