// The admin lists' table: scrolls sideways on a phone, a header of column names, then the rows.
import type { ReactNode } from "react";

export function Table({
  testId,
  columns,
  children,
}: {
  testId: string;
  columns: string[];
  children: ReactNode;
}) {
  return (
    <div className="table-wrap">
      <table data-testid={testId}>
        <thead>
          <tr>
            {columns.map((column) => (
              <th key={column}>{column}</th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}
