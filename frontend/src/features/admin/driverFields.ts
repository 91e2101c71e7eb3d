// A driver being edited: its form fields, and the PATCH body they make.
import type { Schemas } from "../../api/client";

type Driver = Schemas["DriverOut"];
type DriverUpdate = Schemas["DriverUpdate"];

export interface Fields {
  name: string;
  licence_number: string;
  phone: string;
  licence_expiry: string;
}

export const fieldsOf = (d: Driver): Fields => ({
  name: d.name,
  licence_number: d.licence_number,
  phone: d.phone ?? "",
  licence_expiry: d.licence_expiry ?? "",
});

/** The changed fields as a PATCH body: blanks clear the optional ones. */
export function driverChanges(before: Driver, after: Fields): DriverUpdate {
  const body: DriverUpdate = {};
  const was = fieldsOf(before);
  if (after.name.trim() !== was.name) body.name = after.name.trim();
  if (after.licence_number.trim() !== was.licence_number)
    body.licence_number = after.licence_number.trim();
  if (after.phone.trim() !== was.phone) body.phone = after.phone.trim() || null;
  if (after.licence_expiry !== was.licence_expiry)
    body.licence_expiry = after.licence_expiry || null;
  return body;
}
