import { useTranslation } from "react-i18next";
import { ApiError } from "../lib/problem";

/** An API error as its problem+json title and detail; anything else as a generic message. */
export function ProblemMessage({ error }: { error: unknown }) {
  const { t } = useTranslation();
  if (!error) return null;
  const title = error instanceof ApiError ? error.title : t("error.generic");
  const detail =
    error instanceof ApiError ? error.detail : error instanceof Error ? error.message : null;
  return (
    <div className="problem" role="alert" data-testid="problem">
      <strong>{title}</strong>
      {detail ? <span> — {detail}</span> : null}
    </div>
  );
}
