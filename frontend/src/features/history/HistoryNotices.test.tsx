// @vitest-environment jsdom
import "../../test/dom";
import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { HistoryNotices } from "./HistoryNotices";
import { rangeAllows } from "./replay";

const DAY_MS = 86_400_000;
const notices = () => screen.queryAllByTestId(/./).map((n) => n.dataset.testid);

describe("the history page's range notices", () => {
  it("replays up to 366 days and exports up to 31", () => {
    expect(rangeAllows(0, 31 * DAY_MS)).toEqual({ replay: true, export: true });
    expect(rangeAllows(0, 31 * DAY_MS + 1)).toEqual({ replay: true, export: false });
    expect(rangeAllows(0, 366 * DAY_MS)).toEqual({ replay: true, export: false });
    expect(rangeAllows(0, 366 * DAY_MS + 1)).toEqual({ replay: false, export: false });
  });

  it("says nothing for a day of raw positions", () => {
    const head = { downsampled: false, sampling: null, total: 120 };
    render(<HistoryNotices fromMs={0} toMs={DAY_MS} head={head} shown={120} />);
    expect(notices()).toEqual([]);
  });

  it("says a long range is sampled hourly, and why it cannot be exported", () => {
    const head = { downsampled: true, sampling: "hourly" as const, total: 1900 };
    render(<HistoryNotices fromMs={0} toMs={90 * DAY_MS} head={head} shown={800} />);
    expect(notices()).toEqual(["export-too-long", "history-sampled"]);
    expect(screen.getByTestId("history-sampled").textContent).toBe(
      "Past 31 days the route is sampled hourly (each hour's first and last position): 800 of 1900 points shown.",
    );
    expect(screen.getByTestId("export-too-long").textContent).toContain("at most 31 days");
  });

  it("says a raw route was simplified", () => {
    const head = { downsampled: true, sampling: null, total: 9000 };
    render(<HistoryNotices fromMs={0} toMs={7 * DAY_MS} head={head} shown={5000} />);
    expect(notices()).toEqual(["history-downsampled"]);
    expect(screen.getByText("Showing 5000 of 9000 points (simplified).")).toBeTruthy();
  });

  it("refuses past 366 days, before any answer", () => {
    render(<HistoryNotices fromMs={0} toMs={400 * DAY_MS} head={undefined} shown={0} />);
    expect(notices()).toEqual(["range-too-long"]);
    expect(screen.getByRole("alert").textContent).toContain("at most 366 days");
  });
});
