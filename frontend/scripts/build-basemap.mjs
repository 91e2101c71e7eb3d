// The offline base layer: Natural Earth 1:50m countries (the world-atlas package) as GeoJSON,
// written to public/basemap/ so the map needs no tile server. Coordinates are rounded to
// 4 decimals (~10 m), far finer than 1:50m data, to keep the file small.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { feature, mesh } from "topojson-client";

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "public", "basemap");
const topology = JSON.parse(
  readFileSync(require.resolve("world-atlas/countries-50m.json"), "utf8"),
);

const round = (value) => (Array.isArray(value) ? value.map(round) : Math.round(value * 1e4) / 1e4);

function rounded(geojson) {
  return JSON.stringify(geojson, (key, value) => (key === "coordinates" ? round(value) : value));
}

mkdirSync(out, { recursive: true });
const countries = feature(topology, topology.objects.countries);
writeFileSync(join(out, "countries.geojson"), rounded(countries));
const borders = mesh(topology, topology.objects.countries, (a, b) => a !== b);
writeFileSync(
  join(out, "borders.geojson"),
  rounded({ type: "Feature", properties: {}, geometry: borders }),
);
console.log(`basemap: ${countries.features.length} countries written to ${out}`);
