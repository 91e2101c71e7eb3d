import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// `npm run dev` proxies the API and the live WebSocket to a gateway (default: `make run`'s).
const gateway = process.env.FLEET_GATEWAY_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      "/api": { target: gateway, ws: true, changeOrigin: true },
      "/.well-known": { target: gateway, changeOrigin: true },
    },
  },
  build: {
    chunkSizeWarningLimit: 1200,
    rollupOptions: {
      output: {
        manualChunks: { maplibre: ["maplibre-gl"] },
      },
    },
  },
  test: {
    // Components' tests run in jsdom (`// @vitest-environment jsdom` at their top).
    environment: "node",
    include: ["src/**/*.test.{ts,tsx}"],
  },
});
