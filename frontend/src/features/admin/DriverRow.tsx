// A driver's row in the admin table, edited in place: Edit turns the cells into inputs, Save
// sends only what changed (PATCH), Escape or Cancel puts the row back.
import { type FormEvent, useState } from "react";
import { useTranslation } from "react-i18next";
import type { Schemas } from "../../api/client";
import { driverChanges, fieldsOf, type Fields } from "./driverFields";

type Driver = Schemas["DriverOut"];
type DriverUpdate = Schemas["DriverUpdate"];

export function DriverRow({
  driver,
  onSave,
  onDelete,
}: {
  driver: Driver;
  onSave: (body: DriverUpdate) => Promise<unknown>;
  onDelete: () => void;
}) {
  const { t } = useTranslation();
  const [fields, setFields] = useState<Fields | null>(null);
  const [saving, setSaving] = useState(false);
  const formId = `driver-${driver.id}`;

  if (!fields) {
    return (
      <tr data-testid="driver-row" data-driver-id={driver.id}>
        <td>{driver.name}</td>
        <td>{driver.licence_number}</td>
        <td>{driver.phone ?? "—"}</td>
        <td>{driver.licence_expiry ?? "—"}</td>
        <td>
          <button
            type="button"
            onClick={() => setFields(fieldsOf(driver))}
            data-testid="driver-edit"
          >
            {t("common.edit")}
          </button>{" "}
          <button type="button" onClick={onDelete}>
            {t("common.delete")}
          </button>
        </td>
      </tr>
    );
  }

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const body = driverChanges(driver, fields);
    if (Object.keys(body).length === 0) return setFields(null);
    setSaving(true);
    try {
      await onSave(body);
      setFields(null);
    } catch {
      // The table shows the API's problem; the row stays open to fix it.
    } finally {
      setSaving(false);
    }
  };
  const input = (key: keyof Fields, label: string, extra: object = {}) => (
    <td>
      <input
        form={formId}
        value={fields[key]}
        onChange={(e) => setFields({ ...fields, [key]: e.target.value })}
        onKeyDown={(e) => {
          if (e.key === "Escape") setFields(null);
        }}
        aria-label={label}
        data-testid={`driver-${key}`}
        {...extra}
      />
    </td>
  );
  return (
    <tr data-testid="driver-row" data-driver-id={driver.id} className="editing">
      {input("name", t("common.name"), { required: true, autoFocus: true })}
      {input("licence_number", t("admin.licence"), { required: true })}
      {input("phone", t("admin.phone"), { type: "tel" })}
      {input("licence_expiry", t("admin.licenceExpiry"), { type: "date" })}
      <td>
        {/* A form cannot wrap a table row; the inputs join it by its id. */}
        <form id={formId} onSubmit={(e) => void submit(e)}>
          <button type="submit" className="primary" disabled={saving} data-testid="driver-save">
            {t("common.save")}
          </button>{" "}
          <button type="button" onClick={() => setFields(null)}>
            {t("common.cancel")}
          </button>
        </form>
      </td>
    </tr>
  );
}
