// Formatting of times, durations and measures, in the user's language and time zone, units
// always named.

export function formatRelative(fromMs: number, nowMs: number, locale: string): string {
  const seconds = Math.round((fromMs - nowMs) / 1000);
  const rtf = new Intl.RelativeTimeFormat(locale, { numeric: "always", style: "short" });
  const abs = Math.abs(seconds);
  if (abs < 60) return rtf.format(seconds, "second");
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), "hour");
  return rtf.format(Math.round(seconds / 86400), "day");
}

export function formatDateTime(iso: string | number, locale: string, timeZone?: string): string {
  const date = typeof iso === "number" ? new Date(iso) : new Date(iso);
  if (Number.isNaN(date.getTime())) return "—";
  return new Intl.DateTimeFormat(locale, {
    dateStyle: "short",
    timeStyle: "medium",
    ...(timeZone ? { timeZone } : {}),
  }).format(date);
}

function unit(value: number, unitName: string, locale: string, digits: number): string {
  return new Intl.NumberFormat(locale, {
    style: "unit",
    unit: unitName,
    unitDisplay: "short",
    maximumFractionDigits: digits,
  }).format(value);
}

export function formatSpeed(kph: number | null | undefined, locale: string): string {
  return kph == null ? "—" : unit(kph, "kilometer-per-hour", locale, 0);
}

export function formatDistance(metres: number | null | undefined, locale: string): string {
  if (metres == null) return "—";
  return metres < 1000
    ? unit(metres, "meter", locale, 0)
    : unit(metres / 1000, "kilometer", locale, 1);
}

export function formatPercent(value: number | null | undefined, locale: string): string {
  return value == null ? "—" : unit(value, "percent", locale, 0);
}

const COMPASS = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"] as const;

export function formatHeading(deg: number | null | undefined): string {
  if (deg == null) return "—";
  const normalised = ((deg % 360) + 360) % 360;
  const point = COMPASS[Math.round(normalised / 45) % 8];
  return `${Math.round(normalised)}° ${point}`;
}

/** "1 h 05 min", "4 min 12 s", "12 s". */
export function formatDuration(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m > 0) return `${m} min ${String(s).padStart(2, "0")} s`;
  return `${s} s`;
}

/** A value for <input type="datetime-local"> in the browser's zone. */
export function toLocalInput(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
