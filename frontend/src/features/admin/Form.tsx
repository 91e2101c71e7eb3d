// The pieces every admin form is made of (vehicles, drivers, devices, users, maintenance): a
// form of labelled fields ending in one submit button that is off while its request runs.
import type { InputHTMLAttributes, ReactNode } from "react";

export function Field({ label, children }: { label: string; children: ReactNode }) {
  return (
    <label>
      {label}
      {children}
    </label>
  );
}

/** A labelled input bound to one string value. */
export function TextField({
  label,
  value,
  onValue,
  ...input
}: {
  label: string;
  value: string;
  onValue: (value: string) => void;
} & Omit<InputHTMLAttributes<HTMLInputElement>, "value" | "onChange">) {
  return (
    <Field label={label}>
      <input {...input} value={value} onChange={(e) => onValue(e.target.value)} />
    </Field>
  );
}

export function EntityForm({
  testId,
  onSubmit,
  pending,
  submitLabel,
  submitTestId,
  inCard = false,
  children,
  actions,
}: {
  testId: string;
  onSubmit: () => void;
  pending: boolean;
  submitLabel: string;
  submitTestId?: string;
  /** Inside a card already (no card of its own). */
  inCard?: boolean;
  children: ReactNode;
  /** More buttons after the submit one (e.g. Cancel). */
  actions?: ReactNode;
}) {
  return (
    <form
      className={inCard ? "form" : "form card"}
      onSubmit={(e) => {
        e.preventDefault();
        onSubmit();
      }}
      data-testid={testId}
    >
      {children}
      <button type="submit" className="primary" disabled={pending} data-testid={submitTestId}>
        {submitLabel}
      </button>
      {actions}
    </form>
  );
}
