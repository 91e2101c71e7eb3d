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
const AdminPage = lazy(() => import("../features/admin/AdminPage"));
const ReportsPage = lazy(() => import("../features/reports/ReportsPage"));
const RulesPage = lazy(() => import("../features/alerts/RulesPage"));

export function App() {
  return (
    <QueryClientProvider client={queryClient}>
      <BrowserRouter>
        <Routes>
          <Route path="/register" element={<RegisterPage />} />
          <Route path="/" element={<Shell />}>
            <Route index element={<LiveView />} />
            <Route path="alerts" element={<AlertsPage />} />
            <Route path="alerts/rules" element={<RulesPage />} />
            <Route path="profile" element={<ProfilePage />} />
            <Route path="history/:vehicleId" element={<HistoryPage />} />
            <Route path="geofences" element={<GeofencesPage />} />
            <Route path="admin" element={<AdminPage />} />
            <Route path="reports" element={<ReportsPage />} />
          </Route>
        </Routes>
      </BrowserRouter>
    </QueryClientProvider>
  );
}
