// Fleet administration: vehicles (and their driver), drivers, devices (credentials shown
// once), users and roles (admins), and the ingest rejections (admins). The API enforces the
// roles; the tabs only follow them.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { useTranslation } from "react-i18next";
import { useSearchParams } from "react-router-dom";
import { api, unwrap, type Schemas } from "../../api/client";
import { ProblemMessage } from "../../components/ProblemMessage";
import { formatDateTime } from "../../lib/format";
import { useCan } from "../auth/session";
import { useDrivers, useVehicles } from "../vehicles/api";
import { useUsers } from "./api";
import { CredentialsPanel } from "./CredentialsPanel";
import { DriverRow } from "./DriverRow";
import { EntityForm, Field, TextField } from "./Form";
import { Table } from "./Table";
import { MaintenancePanel } from "./MaintenancePanel";

// The API's own defaults, which the generated types make explicit.
const VEHICLE_DEFAULTS = {
  type: "car" as const,
  status: "active" as const,
  tags: [] as string[],
  odometer_km: 0,
  engine_hours: 0,
};

type Tab = "vehicles" | "drivers" | "devices" | "users" | "rejections";

function useRefresh(...keys: string[]) {
  const client = useQueryClient();
  return () => keys.forEach((key) => void client.invalidateQueries({ queryKey: [key] }));
}

function VehiclesTab() {
  const { t } = useTranslation();
  const vehicles = useVehicles();
  const drivers = useDrivers();
  const refresh = useRefresh("vehicles");
  const [form, setForm] = useState({ name: "", plate: "", group: "" });
  const [maintained, setMaintained] = useState<string | null>(null);
  const create = useMutation({
    mutationFn: async () =>
      unwrap(
        await api.POST("/api/v1/vehicles", {
          body: {
            ...VEHICLE_DEFAULTS,
            name: form.name,
            plate: form.plate,
            group: form.group || null,
          },
        }),
      ),
    onSuccess: () => {
      setForm({ name: "", plate: "", group: "" });
      refresh();
    },
  });
  const remove = useMutation({
    mutationFn: async (id: string) =>
      unwrap(
        await api.DELETE("/api/v1/vehicles/{vehicle_id}", { params: { path: { vehicle_id: id } } }),
      ),
    onSuccess: refresh,
  });
  const assign = useMutation({
    mutationFn: async ({ vehicleId, driverId }: { vehicleId: string; driverId: string | null }) =>
      unwrap(
        await api.PUT("/api/v1/vehicles/{vehicle_id}/driver", {
          params: { path: { vehicle_id: vehicleId } },
          body: { driver_id: driverId },
        }),
      ),
    onSuccess: refresh,
  });
  return (
    <>
      <EntityForm
        testId="vehicle-form"
        onSubmit={() => create.mutate()}
        pending={create.isPending}
        submitLabel={t("common.create")}
        submitTestId="vehicle-create"
      >
        <TextField
          label={t("common.name")}
          required
          value={form.name}
          onValue={(name) => setForm({ ...form, name })}
          data-testid="vehicle-name"
        />
        <TextField
          label={t("admin.plate")}
          required
          value={form.plate}
          onValue={(plate) => setForm({ ...form, plate })}
          data-testid="vehicle-plate"
        />
        <TextField
          label={t("admin.group")}
          value={form.group}
          onValue={(group) => setForm({ ...form, group })}
        />
      </EntityForm>
      <ProblemMessage error={vehicles.error ?? create.error ?? remove.error ?? assign.error} />
      <Table
        testId="admin-vehicles"
        columns={[
          t("common.name"),
          t("admin.plate"),
          t("admin.group"),
          t("admin.assignDriver"),
          t("common.actions"),
        ]}
      >
        {(vehicles.data ?? []).map((v) => (
          <tr key={v.id}>
            <td>{v.name}</td>
            <td>{v.plate}</td>
            <td>{v.group ?? "—"}</td>
            <td>
              <select
                value={v.current_driver_id ?? ""}
                onChange={(e) =>
                  assign.mutate({ vehicleId: v.id, driverId: e.target.value || null })
                }
                aria-label={t("admin.assignDriver")}
                data-testid="assign-driver"
              >
                <option value="">{t("admin.none")}</option>
                {(drivers.data ?? []).map((d) => (
                  <option key={d.id} value={d.id}>
                    {d.name}
                  </option>
                ))}
              </select>
            </td>
            <td>
              <button
                type="button"
                aria-pressed={maintained === v.id}
                onClick={() => setMaintained(maintained === v.id ? null : v.id)}
                data-testid="vehicle-maintenance"
              >
                {t("maintenance.open")}
              </button>
              <button type="button" onClick={() => remove.mutate(v.id)}>
                {t("common.delete")}
              </button>
            </td>
          </tr>
        ))}
      </Table>
      {(vehicles.data ?? [])
        .filter((v) => v.id === maintained)
        .map((v) => (
          <MaintenancePanel key={v.id} vehicle={v} />
        ))}
    </>
  );
}

function DriversTab() {
  const { t } = useTranslation();
  const drivers = useDrivers();
  const refresh = useRefresh("drivers");
  const [form, setForm] = useState({ name: "", licence_number: "", phone: "" });
  const create = useMutation({
    mutationFn: async () =>
      unwrap(
        await api.POST("/api/v1/drivers", {
          body: { name: form.name, licence_number: form.licence_number, phone: form.phone || null },
        }),
      ),
    onSuccess: () => {
      setForm({ name: "", licence_number: "", phone: "" });
      refresh();
    },
  });
  const update = useMutation({
    mutationFn: async ({ id, body }: { id: string; body: Schemas["DriverUpdate"] }) =>
      unwrap(
        await api.PATCH("/api/v1/drivers/{driver_id}", {
          params: { path: { driver_id: id } },
          body,
        }),
      ),
    onSuccess: refresh,
  });
  const remove = useMutation({
    mutationFn: async (id: string) =>
      unwrap(
        await api.DELETE("/api/v1/drivers/{driver_id}", { params: { path: { driver_id: id } } }),
      ),
    onSuccess: refresh,
  });
  return (
    <>
      <EntityForm
        testId="driver-form"
        onSubmit={() => create.mutate()}
        pending={create.isPending}
        submitLabel={t("common.create")}
      >
        <TextField
          label={t("common.name")}
          required
          value={form.name}
          onValue={(name) => setForm({ ...form, name })}
        />
        <TextField
          label={t("admin.licence")}
          required
          value={form.licence_number}
          onValue={(licence_number) => setForm({ ...form, licence_number })}
        />
        <TextField
          label={t("admin.phone")}
          type="tel"
          value={form.phone}
          onValue={(phone) => setForm({ ...form, phone })}
        />
      </EntityForm>
      <ProblemMessage error={drivers.error ?? create.error ?? update.error ?? remove.error} />
      <Table
        testId="admin-drivers"
        columns={[
          t("common.name"),
          t("admin.licence"),
          t("admin.phone"),
          t("admin.licenceExpiry"),
          t("common.actions"),
        ]}
      >
        {(drivers.data ?? []).map((d) => (
          <DriverRow
            key={d.id}
            driver={d}
            onSave={(body) => update.mutateAsync({ id: d.id, body })}
            onDelete={() => remove.mutate(d.id)}
          />
        ))}
      </Table>
    </>
  );
}

function DevicesTab() {
  const { t, i18n } = useTranslation();
  const vehicles = useVehicles();
  const refresh = useRefresh("devices");
  const devices = useQuery({
    queryKey: ["devices"],
    queryFn: async () =>
      unwrap(await api.GET("/api/v1/devices", { params: { query: { limit: 200 } } })).items,
  });
  const [form, setForm] = useState({
    uid: "",
    name: "",
    vehicle_id: "",
    protocol: "mqtt" as Schemas["DeviceProtocol"],
  });
  const [shown, setShown] = useState<{
    uid: string;
    credentials: Schemas["BrokerCredentials"];
  } | null>(null);
  const create = useMutation({
    mutationFn: async () =>
      unwrap(
        await api.POST("/api/v1/devices", {
          body: {
            uid: form.uid,
            name: form.name,
            protocol: form.protocol,
            vehicle_id: form.vehicle_id || null,
            active: true,
          },
        }),
      ),
    onSuccess: (device) => {
      // A Teltonika or GT06 tracker gets no credentials: it is known by its IMEI.
      setShown(device.credentials ? { uid: device.uid, credentials: device.credentials } : null);
      setForm({ ...form, uid: "", name: "" });
      refresh();
    },
  });
  const rotate = useMutation({
    mutationFn: async (device: Schemas["DeviceOut"]) => {
      const rotated = unwrap(
        await api.POST("/api/v1/devices/{device_id}/credentials", {
          params: { path: { device_id: device.id } },
        }),
      );
      return { uid: device.uid, credentials: rotated as Schemas["BrokerCredentials"] };
    },
    onSuccess: (result) => setShown(result),
  });
  const remove = useMutation({
    mutationFn: async (id: string) =>
      unwrap(
        await api.DELETE("/api/v1/devices/{device_id}", { params: { path: { device_id: id } } }),
      ),
    onSuccess: refresh,
  });
  const names = new Map((vehicles.data ?? []).map((v) => [v.id, v.name]));
  return (
    <>
      <EntityForm
        testId="device-form"
        onSubmit={() => create.mutate()}
        pending={create.isPending}
        submitLabel={t("common.create")}
        submitTestId="device-create"
      >
        <TextField
          label={t("admin.uid")}
          required
          value={form.uid}
          onValue={(uid) => setForm({ ...form, uid })}
          data-testid="device-uid"
        />
        <TextField
          label={t("common.name")}
          required
          value={form.name}
          onValue={(name) => setForm({ ...form, name })}
          data-testid="device-name"
        />
        <Field label={t("admin.protocol")}>
          <select
            value={form.protocol}
            onChange={(e) =>
              setForm({ ...form, protocol: e.target.value as Schemas["DeviceProtocol"] })
            }
          >
            {(["mqtt", "owntracks", "osmand", "teltonika", "gt06"] as const).map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </Field>
        <Field label={t("admin.vehicle")}>
          <select
            value={form.vehicle_id}
            onChange={(e) => setForm({ ...form, vehicle_id: e.target.value })}
            data-testid="device-vehicle"
          >
            <option value="">{t("admin.none")}</option>
            {(vehicles.data ?? []).map((v) => (
              <option key={v.id} value={v.id}>
                {v.name}
              </option>
            ))}
          </select>
        </Field>
      </EntityForm>
      {shown ? (
        <CredentialsPanel
          uid={shown.uid}
          credentials={shown.credentials}
          onClose={() => setShown(null)}
        />
      ) : null}
      <ProblemMessage error={devices.error ?? create.error ?? rotate.error ?? remove.error} />
      <Table
        testId="admin-devices"
        columns={[
          t("common.name"),
          t("admin.uid"),
          t("admin.protocol"),
          t("admin.vehicle"),
          t("admin.receivedAt"),
          t("common.actions"),
        ]}
      >
        {(devices.data ?? []).map((d) => (
          <tr key={d.id}>
            <td>{d.name}</td>
            <td>{d.uid}</td>
            <td>{d.protocol}</td>
            <td>{d.vehicle_id ? (names.get(d.vehicle_id) ?? d.vehicle_id.slice(0, 8)) : "—"}</td>
            <td>{d.last_seen_at ? formatDateTime(d.last_seen_at, i18n.language) : "—"}</td>
            <td>
              <button type="button" onClick={() => rotate.mutate(d)} data-testid="device-rotate">
                {t("admin.rotate")}
              </button>{" "}
              <button type="button" onClick={() => remove.mutate(d.id)}>
                {t("common.delete")}
              </button>
            </td>
          </tr>
        ))}
      </Table>
    </>
  );
}

const ROLES = ["admin", "dispatcher", "viewer"] as const;

function UsersTab() {
  const { t } = useTranslation();
  const refresh = useRefresh("users");
  const users = useUsers();
  const [form, setForm] = useState<Schemas["UserCreate"]>({
    email: "",
    full_name: "",
    password: "",
    role: "viewer",
  });
  const create = useMutation({
    mutationFn: async () => unwrap(await api.POST("/api/v1/users", { body: form })),
    onSuccess: () => {
      setForm({ email: "", full_name: "", password: "", role: "viewer" });
      refresh();
    },
  });
  const update = useMutation({
    mutationFn: async ({ id, body }: { id: string; body: Schemas["UserUpdate"] }) =>
      unwrap(
        await api.PATCH("/api/v1/users/{user_id}", { params: { path: { user_id: id } }, body }),
      ),
    onSuccess: refresh,
  });
  return (
    <>
      <EntityForm
        testId="user-form"
        onSubmit={() => create.mutate()}
        pending={create.isPending}
        submitLabel={t("common.create")}
        submitTestId="user-create"
      >
        <TextField
          label={t("admin.email")}
          type="email"
          required
          value={form.email}
          onValue={(email) => setForm({ ...form, email })}
          data-testid="user-email"
        />
        <TextField
          label={t("auth.fullName")}
          required
          value={form.full_name}
          onValue={(full_name) => setForm({ ...form, full_name })}
          data-testid="user-full-name"
        />
        <TextField
          label={t("auth.password")}
          type="password"
          autoComplete="new-password"
          required
          value={form.password}
          onValue={(password) => setForm({ ...form, password })}
          data-testid="user-password"
        />
        <Field label={t("admin.role")}>
          <select
            value={form.role}
            onChange={(e) =>
              setForm({ ...form, role: e.target.value as Schemas["UserCreate"]["role"] })
            }
            data-testid="user-role"
          >
            {ROLES.map((r) => (
              <option key={r} value={r}>
                {t(`role.${r}`)}
              </option>
            ))}
          </select>
        </Field>
      </EntityForm>
      <ProblemMessage error={users.error ?? create.error ?? update.error} />
      <Table
        testId="admin-users"
        columns={[t("admin.email"), t("auth.fullName"), t("admin.role"), t("admin.active")]}
      >
        {(users.data ?? []).map((u) => (
          <tr key={u.id}>
            <td>{u.email}</td>
            <td>{u.full_name}</td>
            <td>
              <select
                value={u.role}
                onChange={(e) =>
                  update.mutate({
                    id: u.id,
                    body: { role: e.target.value as (typeof ROLES)[number] },
                  })
                }
                aria-label={t("admin.role")}
              >
                {ROLES.map((r) => (
                  <option key={r} value={r}>
                    {t(`role.${r}`)}
                  </option>
                ))}
              </select>
            </td>
            <td>
              <input
                type="checkbox"
                checked={u.is_active}
                onChange={(e) => update.mutate({ id: u.id, body: { is_active: e.target.checked } })}
                aria-label={t("admin.active")}
              />
            </td>
          </tr>
        ))}
      </Table>
    </>
  );
}

function RejectionsTab() {
  const { t, i18n } = useTranslation();
  const rejections = useQuery({
    queryKey: ["rejections"],
    queryFn: async () =>
      unwrap(await api.GET("/api/v1/ingest/rejections", { params: { query: { limit: 200 } } }))
        .items,
  });
  return (
    <>
      <ProblemMessage error={rejections.error} />
      <Table
        testId="admin-rejections"
        columns={[
          t("admin.receivedAt"),
          t("admin.source"),
          t("admin.uid"),
          t("admin.reason"),
          t("admin.payload"),
        ]}
      >
        {(rejections.data ?? []).map((r) => (
          <tr key={r.id}>
            <td>{formatDateTime(r.received_at, i18n.language)}</td>
            <td>{r.source}</td>
            <td>{r.device_uid ?? "—"}</td>
            <td>
              {r.reason}
              <div className="row-sub">{r.detail}</div>
            </td>
            <td>
              <code className="secret">{r.payload.slice(0, 200)}</code>
            </td>
          </tr>
        ))}
      </Table>
    </>
  );
}

export default function AdminPage() {
  const { t } = useTranslation();
  const can = useCan();
  const [params, setParams] = useSearchParams();
  const tabs: Tab[] = can.manageUsers
    ? ["vehicles", "drivers", "devices", "users", "rejections"]
    : ["vehicles", "drivers", "devices"];
  const requested = params.get("tab") as Tab | null;
  const tab: Tab = requested && tabs.includes(requested) ? requested : "vehicles";
  if (!can.edit) return null;
  return (
    <main className="page">
      <h1>{t("nav.admin")}</h1>
      <div className="tabs" role="tablist">
        {tabs.map((name) => (
          <button
            key={name}
            type="button"
            role="tab"
            aria-selected={tab === name}
            onClick={() => setParams({ tab: name })}
            data-testid={`admin-tab-${name}`}
          >
            {t(`admin.${name}`)}
          </button>
        ))}
      </div>
      {tab === "vehicles" ? <VehiclesTab /> : null}
      {tab === "drivers" ? <DriversTab /> : null}
      {tab === "devices" ? <DevicesTab /> : null}
      {tab === "users" ? <UsersTab /> : null}
      {tab === "rejections" ? <RejectionsTab /> : null}
    </main>
  );
}
