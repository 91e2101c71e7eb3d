import { QueryClientProvider } from "@tanstack/react-query";
import { lazy } from "react";
import { BrowserRouter, Route, Routes } from "react-router-dom";
import { RegisterPage } from "../features/auth/RegisterPage";
import { LiveView } from "./LiveView";
import { queryClient } from "./queryClient";
import { Shell } from "./Shell";

// Heavy or rarely used pages load on demand, keeping the first load to the live map.
const AlertsPage = lazy(() => import("../features/alerts/AlertsPage"));
const ProfilePage = lazy(() => import("../features/auth/ProfilePage"));
const HistoryPage = lazy(() => import("../features/history/HistoryPage"));
const GeofencesPage = lazy(() => import("../features/geofences/GeofencesPage"));

export function App() {
  return (
    <QueryClientProvider client={queryClient}>
      <BrowserRouter>
        <Routes>
          <Route path="/register" element={<RegisterPage />} />
          <Route path="/" element={<Shell />}>
            <Route index element={<LiveView />} />
            <Route path="alerts" element={<AlertsPage />} />
            <Route path="profile" element={<ProfilePage />} />
            <Route path="history/:vehicleId" element={<HistoryPage />} />
            <Route path="geofences" element={<GeofencesPage />} />
          </Route>
        </Routes>
      </BrowserRouter>
    </QueryClientProvider>
  );
}
