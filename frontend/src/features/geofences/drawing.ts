// Terra-draw on a MapLibre map: polygons and circles are drawn with clicks (a circle: its
// centre, then a point on its edge), and the one shape on the map is edited in the select
// mode — a polygon's vertices dragged, inserted at midpoints or deleted, a circle resized from
// any of its points about its fixed centre, either one dragged whole.
import type { Map as MapLibreMap } from "maplibre-gl";
import {
  TerraDraw,
  TerraDrawCircleMode,
  TerraDrawPolygonMode,
  TerraDrawSelectMode,
} from "terra-draw";
import { TerraDrawMapLibreGLAdapter } from "terra-draw-maplibre-gl-adapter";

export function createDraw(map: MapLibreMap): TerraDraw {
  const draw = new TerraDraw({
    adapter: new TerraDrawMapLibreGLAdapter({ map }),
    modes: [
      new TerraDrawPolygonMode(),
      new TerraDrawCircleMode(),
      new TerraDrawSelectMode({
        flags: {
          polygon: {
            feature: {
              draggable: true,
              coordinates: { draggable: true, midpoints: true, deletable: true },
            },
          },
          circle: { feature: { draggable: true, coordinates: { resizable: "center-fixed" } } },
        },
      }),
    ],
  });
  draw.start();
  return draw;
}
