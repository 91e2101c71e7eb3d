// Who gets an alert rule's push notifications: users of the org picked by name or email
// (none picked: every user), from the org's directory of active users. A picked user the
// directory no longer lists (deactivated or deleted) stays picked, shown by id, removable.
import { useState } from "react";
import { useTranslation } from "react-i18next";
import type { Schemas } from "../../api/client";

export type PickableUser = Schemas["DirectoryEntry"];

const SHOWN = 50;

export function RecipientPicker({
  users,
  selected,
  onChange,
}: {
  /** undefined: the directory is not loaded (yet). */
  users: PickableUser[] | undefined;
  selected: string[];
  onChange: (ids: string[]) => void;
}) {
  const { t } = useTranslation();
  const [query, setQuery] = useState("");
  const byId = new Map((users ?? []).map((u) => [u.id, u]));
  const text = query.trim().toLowerCase();
  const matches = (users ?? []).filter(
    (u) =>
      !text || u.full_name.toLowerCase().includes(text) || u.email.toLowerCase().includes(text),
  );
  const toggle = (id: string) =>
    onChange(selected.includes(id) ? selected.filter((s) => s !== id) : [...selected, id]);
  const name = (id: string) => {
    const user = byId.get(id);
    if (user) return user.full_name || user.email;
    return t(users ? "rules.unlistedUser" : "rules.unknownUser", { id: id.slice(0, 8) });
  };

  return (
    <fieldset className="recipient-picker" data-testid="rule-recipients">
      <legend>{t("rules.recipients")}</legend>
      {selected.length === 0 ? <p className="row-sub">{t("rules.everyone")}</p> : null}
      <ul className="chips">
        {selected.map((id) => (
          <li key={id} data-testid="recipient-chip">
            {name(id)}
            <button
              type="button"
              onClick={() => toggle(id)}
              aria-label={t("rules.removeRecipient", { name: name(id) })}
            >
              ×
            </button>
          </li>
        ))}
      </ul>
      {users === undefined ? null : (
        <>
          <input
            type="search"
            value={query}
            onChange={(e) => setQuery(e.target.value)}
            placeholder={t("rules.findUser")}
            aria-label={t("rules.findUser")}
            data-testid="recipient-search"
          />
          <ul className="picker-list">
            {matches.slice(0, SHOWN).map((u) => (
              <li key={u.id}>
                <label className="inline">
                  <input
                    type="checkbox"
                    checked={selected.includes(u.id)}
                    onChange={() => toggle(u.id)}
                    data-testid="recipient-option"
                  />
                  {u.full_name} <span className="row-sub">{u.email}</span>
                </label>
              </li>
            ))}
            {matches.length > SHOWN ? (
              <li className="row-sub">{t("rules.moreUsers", { count: matches.length - SHOWN })}</li>
            ) : null}
            {matches.length === 0 ? <li className="row-sub">{t("rules.noUsers")}</li> : null}
          </ul>
        </>
      )}
    </fieldset>
  );
}
