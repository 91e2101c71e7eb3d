// The signed-in session: tokens, user and org, kept in localStorage so a reload or a new tab
// stays signed in. The access token is renewed a minute before it expires; the refresh token
// is rotated by the API on every use, so a renewal always stores the new pair.
import { create } from "zustand";
import { api, setAuthHooks, type Schemas, type TokenOut, unwrap } from "../../api/client";

export type Role = "admin" | "dispatcher" | "viewer";

export interface Session {
  accessToken: string;
  refreshToken: string;
  /** When the access token expires, ms since the epoch. */
  expiresAtMs: number;
  user: Schemas["UserOut"];
  org: Schemas["OrgOut"];
}

interface SessionState {
  session: Session | null;
  /** Why the last session ended without the user signing out (shown on the sign-in form). */
  endedReason: "expired" | null;
  signIn(tokens: TokenOut): void;
  end(reason: "expired" | null): void;
}

const STORAGE_KEY = "fleet.session";
const RENEW_BEFORE_MS = 60_000;

function stored(): Session | null {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

function fromTokens(tokens: TokenOut): Session {
  return {
    accessToken: tokens.access_token,
    refreshToken: tokens.refresh_token,
    expiresAtMs: Date.now() + tokens.expires_in * 1000,
    user: tokens.user,
    org: tokens.org,
  };
}

export const useSession = create<SessionState>((set) => ({
  session: stored(),
  endedReason: null,
  signIn(tokens) {
    const session = fromTokens(tokens);
    localStorage.setItem(STORAGE_KEY, JSON.stringify(session));
    set({ session, endedReason: null });
  },
  end(reason) {
    localStorage.removeItem(STORAGE_KEY);
    set({ session: null, endedReason: reason });
  },
}));

export function role(): Role | null {
  return (useSession.getState().session?.user.role as Role | undefined) ?? null;
}

/** What the signed-in user may do; the API stays the authority. */
export function useCan() {
  const userRole = useSession((s) => s.session?.user.role as Role | undefined);
  return {
    edit: userRole === "admin" || userRole === "dispatcher",
    manageUsers: userRole === "admin",
    role: userRole ?? null,
  };
}

let renewing: Promise<string | null> | null = null;

/** One renewal at a time: concurrent 401s share it (a second use of the rotated refresh
 * token would revoke the whole family). */
export function renewSession(): Promise<string | null> {
  if (renewing) return renewing;
  const current = useSession.getState().session;
  if (!current) return Promise.resolve(null);
  renewing = (async () => {
    try {
      const tokens = unwrap(
        await api.POST("/api/v1/auth/refresh", { body: { refresh_token: current.refreshToken } }),
      );
      useSession.getState().signIn(tokens);
      return tokens.access_token;
    } catch {
      // Another tab may have rotated the token already and stored the new pair.
      const other = stored();
      if (other && other.refreshToken !== current.refreshToken && other.expiresAtMs > Date.now()) {
        useSession.setState({ session: other });
        return other.accessToken;
      }
      useSession.getState().end("expired");
      return null;
    } finally {
      renewing = null;
    }
  })();
  return renewing;
}

export async function signOut(): Promise<void> {
  const current = useSession.getState().session;
  if (current) {
    // Revokes the refresh token; the session ends here even if the API is unreachable.
    await api
      .POST("/api/v1/auth/logout", { body: { refresh_token: current.refreshToken } })
      .catch(() => undefined);
  }
  useSession.getState().end(null);
}

let renewTimer: ReturnType<typeof setTimeout> | undefined;

function scheduleRenewal(session: Session | null): void {
  clearTimeout(renewTimer);
  if (!session) return;
  const inMs = Math.max(5_000, session.expiresAtMs - Date.now() - RENEW_BEFORE_MS);
  renewTimer = setTimeout(() => void renewSession(), inMs);
}

export function startSessionKeeper(): void {
  setAuthHooks({
    accessToken: () => useSession.getState().session?.accessToken ?? null,
    refresh: renewSession,
  });
  scheduleRenewal(useSession.getState().session);
  useSession.subscribe((state, previous) => {
    if (state.session !== previous.session) scheduleRenewal(state.session);
  });
  window.addEventListener("storage", (event) => {
    if (event.key === STORAGE_KEY) useSession.setState({ session: stored() });
  });
}
