import { useMutation } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { useTranslation } from "react-i18next";
import { Link, useNavigate } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import { ProblemMessage } from "../../components/ProblemMessage";
import { useSession } from "./session";

export function RegisterPage() {
  const { t } = useTranslation();
  const navigate = useNavigate();
  const [form, setForm] = useState({ org_name: "", full_name: "", email: "", password: "" });
  const register = useMutation({
    mutationFn: async () => unwrap(await api.POST("/api/v1/auth/register", { body: form })),
    onSuccess: (tokens) => {
      useSession.getState().signIn(tokens);
      navigate("/");
    },
  });
  const field = (name: keyof typeof form, label: string, type = "text", autoComplete = "off") => (
    <label>
      {label}
      <input
        type={type}
        required
        autoComplete={autoComplete}
        minLength={name === "password" ? 8 : 1}
        value={form[name]}
        onChange={(e) => setForm({ ...form, [name]: e.target.value })}
        data-testid={`register-${name.replace("_", "-")}`}
      />
    </label>
  );
  const submit = (event: FormEvent) => {
    event.preventDefault();
    register.mutate();
  };
  return (
    <main className="auth-page">
      <form
        className="card auth-form"
        onSubmit={submit}
        data-testid="register-form"
        aria-labelledby="register-title"
      >
        <h1 id="register-title">{t("auth.registerTitle")}</h1>
        {field("org_name", t("auth.orgName"), "text", "organization")}
        {field("full_name", t("auth.fullName"), "text", "name")}
        {field("email", t("auth.email"), "email", "username")}
        {field("password", t("auth.password"), "password", "new-password")}
        <ProblemMessage error={register.error} />
        <button
          type="submit"
          className="primary"
          disabled={register.isPending}
          data-testid="register-submit"
        >
          {t("auth.register")}
        </button>
        <p>
          <Link to="/">{t("auth.haveAccount")}</Link>
        </p>
      </form>
    </main>
  );
}
