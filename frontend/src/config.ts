// Runtime configuration: read at start from /config.json (written by the Docker image's
// entrypoint, or dropped beside a static build) and window.__FLEET_CONFIG__, so a deployment
// changes the map style without a rebuild.

export interface FleetConfig {
  /** A MapLibre style URL; when null or unreachable the offline base layer is used. */
  mapStyleUrl: string | null;
  /** Where the public API is; "" means this page's origin. */
  apiBaseUrl: string;
}

declare global {
  interface Window {
    __FLEET_CONFIG__?: Partial<FleetConfig>;
  }
}

const DEFAULTS: FleetConfig = { mapStyleUrl: null, apiBaseUrl: "" };

let current: FleetConfig = { ...DEFAULTS };

export function parseConfig(raw: unknown): Partial<FleetConfig> {
  if (typeof raw !== "object" || raw === null) return {};
  const source = raw as Record<string, unknown>;
  const out: Partial<FleetConfig> = {};
  if (typeof source.mapStyleUrl === "string" && source.mapStyleUrl.trim() !== "") {
    out.mapStyleUrl = source.mapStyleUrl.trim();
  }
  if (typeof source.apiBaseUrl === "string") out.apiBaseUrl = source.apiBaseUrl.replace(/\/+$/, "");
  return out;
}

export async function loadConfig(): Promise<FleetConfig> {
  let fromFile: Partial<FleetConfig> = {};
  try {
    const response = await fetch("/config.json", { cache: "no-store" });
    const type = response.headers.get("content-type") ?? "";
    if (response.ok && type.includes("json")) fromFile = parseConfig(await response.json());
  } catch {
    // No config file: the defaults (same-origin API, offline map) apply.
  }
  current = { ...DEFAULTS, ...fromFile, ...parseConfig(window.__FLEET_CONFIG__) };
  return current;
}

export function config(): FleetConfig {
  return current;
}
