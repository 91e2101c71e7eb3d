import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./app/App";
import { scopeToUser } from "./app/userScope";
import { loadConfig } from "./config";
import { startSessionKeeper } from "./features/auth/session";
import { initI18n } from "./i18n";
import "./styles.css";

async function start() {
  await loadConfig();
  initI18n();
  startSessionKeeper();
  scopeToUser();
  createRoot(document.getElementById("root") as HTMLElement).render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
}

void start();
