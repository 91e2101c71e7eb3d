// What the page holds for one user ends with them: when another user signs in in the same tab
// (a shared dispatch desk), they must not be shown the last one's cached answers or alert
// toasts, which may be another org's or more than their role may read. A renewed token of the
// same user keeps everything.
import { useAlertFeed } from "../features/alerts/store";
import { useSession } from "../features/auth/session";
import { queryClient } from "./queryClient";

export function scopeToUser(): () => void {
  return useSession.subscribe((state, previous) => {
    if (state.session?.user.id === previous.session?.user.id) return;
    queryClient.clear();
    useAlertFeed.setState({ toasts: [], unread: 0 });
  });
}
