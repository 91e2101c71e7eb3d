import { useState } from "react";
import { useTranslation } from "react-i18next";
import { apiBase, type Schemas } from "../../api/client";

function CopyButton({ value, testId }: { value: string; testId: string }) {
  const { t } = useTranslation();
  const [copied, setCopied] = useState(false);
  return (
    <button
      type="button"
      onClick={() => void navigator.clipboard?.writeText(value).then(() => setCopied(true))}
      data-testid={testId}
    >
      {copied ? t("common.copied") : t("common.copy")}
    </button>
  );
}

/** A device's broker credentials, shown once after creation or rotation. */
export function CredentialsPanel({
  uid,
  credentials,
  onClose,
}: {
  uid: string;
  credentials: Schemas["BrokerCredentials"];
  onClose(): void;
}) {
  const { t } = useTranslation();
  const osmand =
    `${apiBase()}/ingest/osmand?key=${encodeURIComponent(credentials.http_key)}` +
    `&id=${encodeURIComponent(uid)}`;
  const rows: Array<[string, string, string]> = [
    ["username", t("admin.brokerUsername"), credentials.username],
    ["password", t("admin.brokerPassword"), credentials.password],
    [
      "address",
      t("admin.brokerAddress"),
      `mqtt://${credentials.mqtt_host}:${credentials.mqtt_port}`,
    ],
    ["http-key", t("admin.httpKey"), credentials.http_key],
    ["osmand", t("admin.osmandUrl"), osmand],
  ];
  return (
    <section
      className="card credentials"
      role="dialog"
      aria-label={t("admin.credentialsOnce")}
      data-testid="device-credentials"
    >
      <p className="notice">{t("admin.credentialsOnce")}</p>
      <dl className="details">
        {rows.map(([id, label, value]) => (
          <div key={id}>
            <dt>{label}</dt>
            <dd>
              <code className="secret" data-testid={`credential-${id}`}>
                {value}
              </code>{" "}
              <CopyButton value={value} testId={`copy-${id}`} />
            </dd>
          </div>
        ))}
      </dl>
      <button type="button" onClick={onClose}>
        {t("common.close")}
      </button>
    </section>
  );
}
