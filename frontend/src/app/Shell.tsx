import { Suspense } from "react";
import { useTranslation } from "react-i18next";
import { NavLink, Outlet } from "react-router-dom";
import { AlertToasts } from "../features/alerts/AlertToasts";
import { useAlertFeed } from "../features/alerts/store";
import { signOut, useCan, useSession } from "../features/auth/session";
import { SignInForm } from "../features/auth/SignInForm";
import { useLive } from "../features/live/liveStore";
import { useLiveConnection } from "../features/live/useLiveConnection";
import { LANGUAGES } from "../i18n";

function LinkStatus() {
  const { t } = useTranslation();
  const link = useLive((s) => s.link);
  return (
    <span
      className={`link-status link-${link}`}
      role="status"
      data-testid="live-status"
      data-state={link}
    >
      <span className="dot" aria-hidden="true" /> {t(`link.${link}`)}
    </span>
  );
}

function SignedIn() {
  const { t, i18n } = useTranslation();
  const user = useSession((s) => s.session?.user);
  const can = useCan();
  const unread = useAlertFeed((s) => s.unread);
  useLiveConnection();
  return (
    <div className="shell">
      <header className="topbar">
        <span className="brand">{t("app.name")}</span>
        <nav className="main-nav" aria-label={t("nav.label")}>
          <NavLink to="/" end>
            {t("nav.live")}
          </NavLink>
          <NavLink
            to="/alerts"
            onClick={() => useAlertFeed.getState().markAllRead()}
            data-testid="nav-alerts"
          >
            {t("nav.alerts")}
            {unread > 0 ? (
              <span
                className="badge"
                data-testid="unread-count"
                aria-label={t("alerts.unread", { count: unread })}
              >
                {unread}
              </span>
            ) : null}
          </NavLink>
          <NavLink to="/geofences">{t("nav.geofences")}</NavLink>
          <NavLink to="/reports">{t("nav.reports")}</NavLink>
          {can.edit ? <NavLink to="/admin">{t("nav.admin")}</NavLink> : null}
        </nav>
        <LinkStatus />
        <select
          className="lang"
          value={i18n.language}
          onChange={(e) => void i18n.changeLanguage(e.target.value)}
          aria-label={t("nav.language")}
          data-testid="language"
        >
          {LANGUAGES.map((l) => (
            <option key={l.code} value={l.code}>
              {l.label}
            </option>
          ))}
        </select>
        <NavLink to="/profile" className="user" data-testid="user-menu" data-role={user?.role}>
          {user?.full_name} ({t(`role.${user?.role ?? "viewer"}`)})
        </NavLink>
        <button type="button" onClick={() => void signOut()} data-testid="sign-out">
          {t("auth.signOut")}
        </button>
      </header>
      <Suspense fallback={<p className="loading">{t("common.loading")}</p>}>
        <Outlet />
      </Suspense>
      <AlertToasts />
    </div>
  );
}

/** Every page is behind this: signed out, the sign-in form is shown in its place. */
export function Shell() {
  const signedIn = useSession((s) => s.session !== null);
  return signedIn ? <SignedIn /> : <SignInForm />;
}
