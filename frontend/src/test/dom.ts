// For components' tests (in jsdom): the English messages, and the DOM emptied after each test.
import { cleanup } from "@testing-library/react";
import { afterEach } from "vitest";
import { initI18n } from "../i18n";

localStorage.setItem("fleet.language", "en");
await initI18n().changeLanguage("en");
afterEach(cleanup);
