// The form of one maintenance schedule: a new one (its meter picked, its first due point left
// blank for the API to set) or an edit of one (its meter fixed, Save or Cancel).
import { useTranslation } from "react-i18next";
import { EntityForm, Field, TextField } from "./Form";
import type { MaintenanceDraft, Meter } from "./maintenance";

export function MaintenanceForm({
  draft,
  onDraft,
  editing,
  pending,
  onSubmit,
  onCancel,
}: {
  draft: MaintenanceDraft;
  onDraft: (draft: MaintenanceDraft) => void;
  editing: boolean;
  pending: boolean;
  onSubmit: () => void;
  onCancel: () => void;
}) {
  const { t } = useTranslation();
  const unit = t(`maintenance.unit.${draft.meter}`);
  return (
    <EntityForm
      testId="maintenance-form"
      inCard
      onSubmit={onSubmit}
      pending={pending}
      submitLabel={editing ? t("common.save") : t("common.create")}
      submitTestId="maintenance-save"
      actions={
        editing ? (
          <button type="button" onClick={onCancel} data-testid="maintenance-cancel">
            {t("common.cancel")}
          </button>
        ) : null
      }
    >
      <TextField
        label={t("common.name")}
        required
        value={draft.name}
        onValue={(name) => onDraft({ ...draft, name })}
        data-testid="maintenance-name"
      />
      <Field label={t("maintenance.meter")}>
        <select
          value={draft.meter}
          disabled={editing}
          title={editing ? t("maintenance.meterFixed") : undefined}
          onChange={(e) => onDraft({ ...draft, meter: e.target.value as Meter })}
          data-testid="maintenance-meter"
        >
          <option value="odometer_km">{t("maintenance.meters.odometer_km")}</option>
          <option value="engine_hours">{t("maintenance.meters.engine_hours")}</option>
        </select>
      </Field>
      <TextField
        label={t("maintenance.interval", { unit })}
        required
        type="number"
        min="0.1"
        step="any"
        value={draft.interval}
        onValue={(interval) => onDraft({ ...draft, interval })}
        data-testid="maintenance-interval"
      />
      <TextField
        label={t("maintenance.nextDueAt", { unit })}
        required={editing}
        type="number"
        min="0"
        step="any"
        placeholder={editing ? undefined : t("maintenance.nextDueBlank")}
        value={draft.nextDue}
        onValue={(nextDue) => onDraft({ ...draft, nextDue })}
        data-testid="maintenance-next-due"
      />
    </EntityForm>
  );
}
