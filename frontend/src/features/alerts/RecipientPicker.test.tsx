// @vitest-environment jsdom
import "../../test/dom";
import { fireEvent, render, screen } from "@testing-library/react";
import { useState } from "react";
import { describe, expect, it } from "vitest";
import { type PickableUser, RecipientPicker } from "./RecipientPicker";

const USERS: PickableUser[] = [
  { id: "u-ann", email: "ann@depot.example", full_name: "Ann Admin", is_active: true },
  { id: "u-bao", email: "bao@depot.example", full_name: "Bảo Dispatcher", is_active: true },
  { id: "u-old", email: "old@depot.example", full_name: "Gone Viewer", is_active: false },
];

function Harness({ users, initial = [] }: { users: PickableUser[] | null; initial?: string[] }) {
  const [selected, setSelected] = useState(initial);
  return (
    <>
      <RecipientPicker users={users} selected={selected} onChange={setSelected} />
      <output data-testid="picked">{selected.join(",")}</output>
    </>
  );
}

const picked = () => screen.getByTestId("picked").textContent;
const options = () =>
  screen.getAllByTestId("recipient-option").map((o) => o.parentElement?.textContent);

describe("the alert rule's recipient picker", () => {
  it("picks and unpicks active users, found by name or email", () => {
    render(<Harness users={USERS} />);
    expect(screen.getByText(/every user of the organization/)).toBeTruthy();
    expect(options()).toHaveLength(2); // the deactivated user is not offered

    fireEvent.change(screen.getByTestId("recipient-search"), { target: { value: "BAO@" } });
    expect(options()).toEqual(["Bảo Dispatcher bao@depot.example"]);
    fireEvent.click(screen.getByTestId("recipient-option"));
    expect(picked()).toBe("u-bao");
    expect(screen.getByTestId("recipient-chip").textContent).toContain("Bảo Dispatcher");

    fireEvent.change(screen.getByTestId("recipient-search"), { target: { value: "ann" } });
    fireEvent.click(screen.getByTestId("recipient-option"));
    expect(picked()).toBe("u-bao,u-ann");
    fireEvent.click(screen.getByRole("button", { name: "Remove Bảo Dispatcher" }));
    expect(picked()).toBe("u-ann");
    fireEvent.change(screen.getByTestId("recipient-search"), { target: { value: "nobody" } });
    expect(screen.getByText("No user matches.")).toBeTruthy();
  });

  it("keeps recipients it cannot list, shown by id, and removable", () => {
    render(<Harness users={null} initial={["5f0c1d2e-aaaa-bbbb", "u-old"]} />);
    expect(screen.queryByTestId("recipient-search")).toBeNull();
    expect(screen.getByText(/Only an admin can list/)).toBeTruthy();
    const chips = screen.getAllByTestId("recipient-chip").map((c) => c.textContent);
    expect(chips[0]).toContain("User 5f0c1d2e");
    fireEvent.click(screen.getAllByRole("button", { name: /^Remove/ })[0]!);
    expect(picked()).toBe("u-old");
  });

  it("still shows a picked user who was deactivated", () => {
    render(<Harness users={USERS} initial={["u-old"]} />);
    expect(screen.getByTestId("recipient-chip").textContent).toContain("Gone Viewer");
    expect(options()).toHaveLength(3);
  });
});
