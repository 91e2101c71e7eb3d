// One way to make a map: the configured style when it loads, otherwise the offline base layer
// (Natural Earth countries, shipped with the app), so a map always renders with no network.
import maplibregl, { type StyleSpecification } from "maplibre-gl";
import "maplibre-gl/dist/maplibre-gl.css";
import { config } from "../../config";

const STYLE_TIMEOUT_MS = 5000;

export const offlineStyle: StyleSpecification = {
  version: 8,
  name: "offline",
  sources: {
    countries: { type: "geojson", data: "/basemap/countries.geojson" },
    borders: { type: "geojson", data: "/basemap/borders.geojson" },
  },
  layers: [
    { id: "sea", type: "background", paint: { "background-color": "#b9d3e6" } },
    { id: "land", type: "fill", source: "countries", paint: { "fill-color": "#f2efe6" } },
    {
      id: "borders",
      type: "line",
      source: "borders",
      paint: { "line-color": "#a9a49a", "line-width": 0.8 },
    },
  ],
};

let resolvedStyle: Promise<StyleSpecification | string> | null = null;

/** The configured style if it answers, else the offline one; decided once per page. */
export function baseStyle(): Promise<StyleSpecification | string> {
  if (resolvedStyle) return resolvedStyle;
  const url = config().mapStyleUrl;
  if (!url) {
    resolvedStyle = Promise.resolve(offlineStyle);
    return resolvedStyle;
  }
  resolvedStyle = (async () => {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), STYLE_TIMEOUT_MS);
    try {
      const response = await fetch(url, { signal: controller.signal });
      if (!response.ok) return offlineStyle;
      return (await response.json()) as StyleSpecification;
    } catch {
      return offlineStyle;
    } finally {
      clearTimeout(timer);
    }
  })();
  return resolvedStyle;
}

/** `hash`: the view follows the URL's `#zoom/lat/lon` both ways, so a view can be linked to
 * (and a test knows exactly where the map is). */
export async function createMap(
  container: HTMLElement,
  { hash = false }: { hash?: boolean } = {},
): Promise<maplibregl.Map> {
  const style = await baseStyle();
  const map = new maplibregl.Map({
    container,
    style,
    center: [106.7, 10.78],
    zoom: 3,
    hash,
    attributionControl: { compact: true },
    // No symbol fade: a fade repaints the map for 300 ms after every source update, i.e. most
    // frames with a big live fleet, and each WebGL frame costs the page's main thread (under
    // software compositing, a synchronous read-back of the whole canvas).
    fadeDuration: 0,
  });
  map.addControl(new maplibregl.NavigationControl({ visualizePitch: false }), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
  // A configured style whose tiles or sprites fail later still leaves the map usable: fall
  // back to the offline layer once if the style itself cannot be loaded.
  let fellBack = false;
  map.on("error", (event) => {
    if (!fellBack && !map.isStyleLoaded() && typeof style === "object" && style !== offlineStyle) {
      fellBack = true;
      map.setStyle(offlineStyle);
    }
    void event;
  });
  installTextImages(map);
  return map;
}

/** Labels drawn as images on demand (`text:<label>`): the offline style has no glyph server,
 * and icons need none. */
function installTextImages(map: maplibregl.Map): void {
  map.on("styleimagemissing", (event) => {
    const id = event.id;
    if (!id.startsWith("text:") || map.hasImage(id)) return;
    const label = id.slice(5);
    const ratio = window.devicePixelRatio || 1;
    const canvas = document.createElement("canvas");
    const context = canvas.getContext("2d");
    if (!context) return;
    const font = `600 ${12 * ratio}px system-ui, sans-serif`;
    context.font = font;
    const width = Math.ceil(context.measureText(label).width + 10 * ratio);
    const height = Math.ceil(18 * ratio);
    canvas.width = width;
    canvas.height = height;
    context.font = font;
    context.fillStyle = "rgba(255,255,255,0.9)";
    context.strokeStyle = "rgba(0,0,0,0.25)";
    context.beginPath();
    context.roundRect(0.5, 0.5, width - 1, height - 1, 4 * ratio);
    context.fill();
    context.stroke();
    context.fillStyle = "#1d2530";
    context.textBaseline = "middle";
    context.fillText(label, 5 * ratio, height / 2 + ratio);
    map.addImage(id, context.getImageData(0, 0, width, height), { pixelRatio: ratio });
  });
}
