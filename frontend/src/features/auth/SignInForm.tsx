import { useMutation } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { useTranslation } from "react-i18next";
import { Link } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import { ProblemMessage } from "../../components/ProblemMessage";
import { useSession } from "./session";

/** Shown in place of any page while nobody is signed in, so the page is kept. */
export function SignInForm() {
  const { t } = useTranslation();
  const endedReason = useSession((s) => s.endedReason);
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const login = useMutation({
    mutationFn: async () =>
      unwrap(await api.POST("/api/v1/auth/login", { body: { email, password } })),
    onSuccess: (tokens) => useSession.getState().signIn(tokens),
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    login.mutate();
  };
  return (
    <main className="auth-page">
      <form
        className="card auth-form"
        onSubmit={submit}
        data-testid="signin-form"
        aria-labelledby="signin-title"
      >
        <h1 id="signin-title">{t("auth.signIn")}</h1>
        {endedReason === "expired" ? (
          <p className="notice" role="status">
            {t("auth.expired")}
          </p>
        ) : null}
        <label>
          {t("auth.email")}
          <input
            type="email"
            autoComplete="username"
            required
            value={email}
            onChange={(e) => setEmail(e.target.value)}
            data-testid="signin-email"
          />
        </label>
        <label>
          {t("auth.password")}
          <input
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            data-testid="signin-password"
          />
        </label>
        <ProblemMessage error={login.error} />
        <button
          type="submit"
          className="primary"
          disabled={login.isPending}
          data-testid="signin-submit"
        >
          {t("auth.signIn")}
        </button>
        <p>
          {t("auth.noAccount")}{" "}
          <Link to="/register" data-testid="register-link">
            {t("auth.register")}
          </Link>
        </p>
      </form>
    </main>
  );
}
