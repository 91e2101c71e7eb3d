// What the history page says about its range: refused (past what the API takes), too long to
// export (exports are raw positions), and how the route shown was thinned (sampled hourly past
// the raw cap, or simplified).
import { useTranslation } from "react-i18next";
import { MAX_RAW_DAYS, MAX_ROLLUP_DAYS, rangeAllows } from "./replay";

export interface HistoryHead {
  downsampled: boolean;
  sampling: "hourly" | null;
  total: number | null;
}

export function HistoryNotices({
  fromMs,
  toMs,
  head,
  shown,
}: {
  fromMs: number;
  toMs: number;
  /** The history answer's head, once it has come. */
  head: HistoryHead | undefined;
  shown: number;
}) {
  const { t } = useTranslation();
  const allows = rangeAllows(fromMs, toMs);
  if (!allows.replay) {
    return (
      <p className="problem" role="alert" data-testid="range-too-long">
        {t("history.tooLong", { days: MAX_ROLLUP_DAYS })}
      </p>
    );
  }
  return (
    <>
      {allows.export ? null : (
        <p className="notice" data-testid="export-too-long">
          {t("history.exportTooLong", { days: MAX_RAW_DAYS })}
        </p>
      )}
      {head?.sampling === "hourly" ? (
        <p className="notice" data-testid="history-sampled">
          {t("history.sampledHourly", { days: MAX_RAW_DAYS, shown, total: head.total ?? shown })}
        </p>
      ) : head?.downsampled ? (
        <p className="notice" data-testid="history-downsampled">
          {t("history.downsampled", { shown, total: head.total })}
        </p>
      ) : null}
    </>
  );
}
