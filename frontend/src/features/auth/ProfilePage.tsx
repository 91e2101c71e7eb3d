import { useTranslation } from "react-i18next";
import { signOut, useSession } from "./session";

export default function ProfilePage() {
  const { t } = useTranslation();
  const session = useSession((s) => s.session);
  if (!session) return null;
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return (
    <main className="page">
      <h1>{t("profile.title")}</h1>
      <dl className="card details" data-testid="profile">
        <div>
          <dt>{t("auth.fullName")}</dt>
          <dd>{session.user.full_name}</dd>
        </div>
        <div>
          <dt>{t("auth.email")}</dt>
          <dd>{session.user.email}</dd>
        </div>
        <div>
          <dt>{t("admin.role")}</dt>
          <dd data-testid="profile-role">
            {t(`role.${session.user.role}`, { defaultValue: session.user.role })}
          </dd>
        </div>
        <div>
          <dt>{t("profile.org")}</dt>
          <dd>{session.org.name}</dd>
        </div>
        <div>
          <dt>{t("profile.timeZone")}</dt>
          <dd>{zone}</dd>
        </div>
      </dl>
      <button type="button" onClick={() => void signOut()}>
        {t("auth.signOut")}
      </button>
    </main>
  );
}
