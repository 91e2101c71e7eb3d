// @vitest-environment jsdom
import "../../test/dom";
import { fireEvent, render, screen } from "@testing-library/react";
import { useState } from "react";
import { describe, expect, it } from "vitest";
import { draftOf, type MaintenanceDraft, NEW_SCHEDULE } from "./maintenance";
import { MaintenanceForm } from "./MaintenanceForm";

function Harness({ initial, editing }: { initial: MaintenanceDraft; editing: boolean }) {
  const [draft, setDraft] = useState(initial);
  const [events, setEvents] = useState<string[]>([]);
  return (
    <>
      <MaintenanceForm
        draft={draft}
        onDraft={setDraft}
        editing={editing}
        pending={false}
        onSubmit={() => setEvents([...events, `submit ${JSON.stringify(draft)}`])}
        onCancel={() => setEvents([...events, "cancel"])}
      />
      <output data-testid="events">{events.join("\n")}</output>
    </>
  );
}

const events = () => screen.getByTestId("events").textContent;
const type = (testId: string, value: string) =>
  fireEvent.change(screen.getByTestId(testId), { target: { value } });

describe("the maintenance schedule form", () => {
  it("creates: picks the meter, leaves the first due point optional", () => {
    render(<Harness initial={NEW_SCHEDULE} editing={false} />);
    expect(screen.getAllByRole("button").map((b) => b.textContent)).toEqual(["Create"]);
    expect((screen.getByTestId("maintenance-next-due") as HTMLInputElement).required).toBe(false);
    type("maintenance-name", "Engine check");
    fireEvent.change(screen.getByTestId("maintenance-meter"), {
      target: { value: "engine_hours" },
    });
    expect(screen.getByText("Every (h)")).toBeTruthy();
    type("maintenance-interval", "250");
    fireEvent.submit(screen.getByTestId("maintenance-form"));
    expect(JSON.parse(events()!.replace("submit ", ""))).toEqual({
      name: "Engine check",
      meter: "engine_hours",
      interval: "250",
      nextDue: "",
    });
  });

  it("edits: the schedule's values, its meter fixed, Save or Cancel", () => {
    const oil = {
      name: "Oil change",
      meter: "odometer_km" as const,
      interval: 5000,
      next_due: 10100,
    };
    render(<Harness initial={draftOf(oil)} editing />);
    expect((screen.getByTestId("maintenance-name") as HTMLInputElement).value).toBe("Oil change");
    expect((screen.getByTestId("maintenance-meter") as HTMLSelectElement).disabled).toBe(true);
    expect((screen.getByTestId("maintenance-next-due") as HTMLInputElement).value).toBe("10100");
    expect(screen.getByText("Next due at (km)")).toBeTruthy();
    expect(screen.getAllByRole("button").map((b) => b.textContent)).toEqual(["Save", "Cancel"]);
    type("maintenance-interval", "7500");
    fireEvent.click(screen.getByTestId("maintenance-cancel"));
    fireEvent.submit(screen.getByTestId("maintenance-form"));
    expect(events()).toBe(
      'cancel\nsubmit {"name":"Oil change","meter":"odometer_km","interval":"7500","nextDue":"10100"}',
    );
  });
});
