// @vitest-environment jsdom
import "../../test/dom";
import { fireEvent, render, screen } from "@testing-library/react";
import { useState } from "react";
import { describe, expect, it } from "vitest";
import { type PickableUser, RecipientPicker } from "./RecipientPicker";

// What the org's directory lists: active users only.
const USERS: PickableUser[] = [
  { id: "u-ann", email: "ann@depot.example", full_name: "Ann Admin" },
  { id: "u-bao", email: "bao@depot.example", full_name: "Bảo Dispatcher" },
];

function Harness({
  users,
  initial = [],
}: {
  users: PickableUser[] | undefined;
  initial?: string[];
}) {
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
  it("picks and unpicks the directory's users, found by name or email", () => {
    render(<Harness users={USERS} />);
    expect(screen.getByText(/every user of the organization/)).toBeTruthy();
    expect(options()).toHaveLength(2);

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

  it("keeps picked users while the directory loads, shown by id, and removable", () => {
    render(<Harness users={undefined} initial={["5f0c1d2e-aaaa-bbbb", "u-ann"]} />);
    expect(screen.queryByTestId("recipient-search")).toBeNull();
    const chips = screen.getAllByTestId("recipient-chip").map((c) => c.textContent);
    expect(chips[0]).toContain("User 5f0c1d2e…");
    expect(chips[0]).not.toContain("deactivated");
    fireEvent.click(screen.getAllByRole("button", { name: /^Remove/ })[0]!);
    expect(picked()).toBe("u-ann");
  });

  it("keeps a picked user the directory no longer lists, says so, and can remove them", () => {
    render(<Harness users={USERS} initial={["u-gone", "u-bao"]} />);
    const chips = screen.getAllByTestId("recipient-chip").map((c) => c.textContent);
    expect(chips[0]).toContain("User u-gone… (deactivated or removed)");
    expect(chips[1]).toContain("Bảo Dispatcher");
    expect(options()).toHaveLength(2);
    fireEvent.click(screen.getByRole("button", { name: /^Remove User u-gone/ }));
    expect(picked()).toBe("u-bao");
  });
});
