// @vitest-environment jsdom
import "../../test/dom";
import { act, fireEvent, render, screen } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import type { Schemas } from "../../api/client";
import { DriverRow } from "./DriverRow";

const DRIVER: Schemas["DriverOut"] = {
  id: "d-1",
  org_id: "o-1",
  name: "Nguyễn Văn An",
  phone: "+84 90 000 0000",
  licence_number: "B2-123",
  licence_expiry: null,
  notes: null,
  current_vehicle_id: null,
  created_at: "2026-01-01T00:00:00Z",
  updated_at: "2026-01-01T00:00:00Z",
  archived_at: null,
};

function renderRow(onSave = vi.fn(async () => undefined)) {
  const onDelete = vi.fn();
  render(
    <table>
      <tbody>
        <DriverRow driver={DRIVER} onSave={onSave} onDelete={onDelete} />
      </tbody>
    </table>,
  );
  return { onSave, onDelete };
}

const edit = (key: string, value: string) =>
  fireEvent.change(screen.getByTestId(`driver-${key}`), { target: { value } });

describe("a driver edited in place", () => {
  it("sends only what changed, blanks clearing the optional fields, then shows the row", async () => {
    const { onSave } = renderRow();
    fireEvent.click(screen.getByTestId("driver-edit"));
    expect((screen.getByTestId("driver-name") as HTMLInputElement).value).toBe("Nguyễn Văn An");
    edit("name", "  Nguyễn Văn Bình ");
    edit("phone", "");
    edit("licence_expiry", "2030-05-31");
    await act(async () => fireEvent.click(screen.getByTestId("driver-save")));
    expect(onSave).toHaveBeenCalledExactlyOnceWith({
      name: "Nguyễn Văn Bình",
      phone: null,
      licence_expiry: "2030-05-31",
    });
    expect(screen.queryByTestId("driver-name")).toBeNull();
    expect(screen.getByTestId("driver-edit")).toBeTruthy();
  });

  it("closes without a request when nothing changed, and Escape cancels", async () => {
    const { onSave } = renderRow();
    fireEvent.click(screen.getByTestId("driver-edit"));
    await act(async () => fireEvent.click(screen.getByTestId("driver-save")));
    expect(onSave).not.toHaveBeenCalled();
    expect(screen.queryByTestId("driver-save")).toBeNull();

    fireEvent.click(screen.getByTestId("driver-edit"));
    edit("name", "Someone else");
    fireEvent.keyDown(screen.getByTestId("driver-name"), { key: "Escape" });
    expect(onSave).not.toHaveBeenCalled();
    expect(screen.getByText("Nguyễn Văn An")).toBeTruthy();
  });

  it("stays open when the API refuses the change", async () => {
    const { onSave } = renderRow(vi.fn(async () => Promise.reject(new Error("409"))));
    fireEvent.click(screen.getByTestId("driver-edit"));
    edit("licence_number", "B2-999");
    await act(async () => fireEvent.click(screen.getByTestId("driver-save")));
    expect(onSave).toHaveBeenCalledExactlyOnceWith({ licence_number: "B2-999" });
    expect((screen.getByTestId("driver-licence_number") as HTMLInputElement).value).toBe("B2-999");
    expect((screen.getByTestId("driver-save") as HTMLButtonElement).disabled).toBe(false);
  });
});
