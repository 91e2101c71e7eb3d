import { useEffect } from "react";
import { useTranslation } from "react-i18next";
import { useNavigate } from "react-router-dom";
import type { AlertOut } from "../../api/client";
import { useLive } from "../live/liveStore";
import { useAlertFeed } from "./store";
import { useAck } from "./useAck";
import { useCan } from "../auth/session";

const TOAST_MS = 15_000;

function Toast({ alert }: { alert: AlertOut }) {
  const { t } = useTranslation();
  const navigate = useNavigate();
  const ack = useAck();
  const can = useCan();
  const dismiss = () => useAlertFeed.getState().dismiss(alert.id);
  useEffect(() => {
    const timer = setTimeout(dismiss, TOAST_MS);
    return () => clearTimeout(timer);
  });
  return (
    <div
      className={`toast severity-${alert.severity}`}
      role="alert"
      data-testid="alert-toast"
      data-alert-id={alert.id}
    >
      <button
        type="button"
        className="toast-body"
        onClick={() => {
          if (alert.vehicle_id) {
            useLive.getState().select(alert.vehicle_id);
            navigate("/");
          }
          dismiss();
        }}
      >
        <strong>{t(`alertType.${alert.type}`, { defaultValue: alert.type })}</strong>
        <span>{alert.rule_name}</span>
      </button>
      {can.edit ? (
        <button
          type="button"
          onClick={() => ack.mutate([alert.id], { onSuccess: dismiss })}
          disabled={ack.isPending}
          data-testid="toast-ack"
        >
          {t("alerts.ack")}
        </button>
      ) : null}
      <button type="button" className="icon" aria-label={t("common.close")} onClick={dismiss}>
        ×
      </button>
    </div>
  );
}

export function AlertToasts() {
  const toasts = useAlertFeed((s) => s.toasts);
  return (
    <div className="toasts" aria-live="polite">
      {toasts.map((a) => (
        <Toast key={a.id} alert={a} />
      ))}
    </div>
  );
}
